// What the c10d files share (native/dist.cc: process groups and collectives;
// native/dist_reducer.cc: gradient all-reduces overlapped with backward): a backend's group
// behind one interface, the handle boxes JS holds, and the wait on a collective (options objects
// are read with native/options.h).
#pragma once
#include <functional>
#include <memory>

#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include "torch_headers.h"
#include "errors.h"
#include "options.h"

namespace tl {
namespace dist {

using Ms = std::chrono::milliseconds;
using WorkPtr = c10::intrusive_ptr<c10d::Work>;

/** One collective's work and what must follow it: on the waiting thread, then on the main thread. */
struct Pending {
  WorkPtr work;
  std::function<void()> afterWait;     // runs where the wait ran (a worker thread, or main when sync)
  std::function<void()> onMainThread;  // runs on the main thread (setting a parameter's .grad)
  std::vector<at::Tensor> keepAlive;   // the tensors the backend reads or writes meanwhile
};

/** A backend's process group behind one interface (ProcessGroupGloo and ProcessGroupNCCL have
 * different bases across libtorch versions, but the same collective signatures). */
struct Group {
  virtual ~Group() = default;
  virtual WorkPtr allreduce(std::vector<at::Tensor>& t, const c10d::AllreduceOptions& o) = 0;
  virtual WorkPtr broadcast(std::vector<at::Tensor>& t, const c10d::BroadcastOptions& o) = 0;
  virtual WorkPtr allgather(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in) = 0;
  virtual WorkPtr reduceScatter(std::vector<at::Tensor>& out, std::vector<std::vector<at::Tensor>>& in,
                                const c10d::ReduceScatterOptions& o) = 0;
  virtual WorkPtr barrier() = 0;
  /** libtorch 1.13's Gloo has no reduce_scatter: it is emulated with an all-reduce. */
  virtual bool hasReduceScatter() const = 0;
  int rank = 0, size = 1;
  Ms timeout{0};
};

constexpr uint64_t kGroupMagic = 0x746c2d67726f7570ULL;

/** What a process-group handle holds. */
struct GroupBox {
  uint64_t magic = kGroupMagic;
  std::shared_ptr<Group> group;  // reset by distDestroy; in-flight work holds its own reference
};

/** The box behind a handle, checked by its magic number (a TypeError naming `name` otherwise). */
template <class Box>
Box* BoxOf(Napi::Env env, const Napi::Value& v, uint64_t magic, const char* name, const char* what) {
  Box* box = v.IsExternal() ? v.As<Napi::External<Box>>().Data() : nullptr;
  if (box == nullptr || box->magic != magic) ThrowTypeError(env, std::string(name) + ": expected " + what + ", got " + Describe(v));
  return box;
}

/** The live group behind argument `i`. */
std::shared_ptr<Group> GroupArg(const Napi::CallbackInfo& info, size_t i);

/** Waits here (sync) or on a worker thread (a Promise); either way the tensors stay alive. */
Napi::Value Finish(Napi::Env env, const char* name, std::shared_ptr<Group> group, Pending pending, bool sync);

c10d::ReduceOp ParseOp(Napi::Env env, const std::string& op);

/** `divisor` != 1 turns a sum into a mean after the wait (Gloo in libtorch 1.13 has no AVG). */
std::function<void()> Divide(std::vector<at::Tensor> tensors, double divisor);

void CheckDistinct(Napi::Env env, const std::vector<at::Tensor>& ts, const char* name);

/** Backends read and write numel() elements from data_ptr(): anything but a contiguous tensor
 * (a transposed or expanded view) would be reduced wrongly or written past its storage. */
void CheckContiguous(Napi::Env env, const std::vector<at::Tensor>& ts, const char* name);

/** A flat bucket's tensors share one dtype and device, so they concatenate without casts. */
void CheckBucket(Napi::Env env, const std::vector<at::Tensor>& ts, const char* name);

/** Registers the entry points of native/dist_reducer.cc. */
void RegisterReducer(Napi::Object exports);

}  // namespace dist
}  // namespace tl
