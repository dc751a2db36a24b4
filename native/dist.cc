// Process groups and collectives over libtorch's c10d: a TCPStore for the rendezvous (rank 0
// serves it) and ProcessGroupGloo (CPU) or ProcessGroupNCCL (CUDA), each compiled in only when
// the libtorch has it (scripts/dist-backends.js sets TORCH_LORA_DIST_GLOO / _NCCL).
//
// A collective is launched on the main thread, in call order (every rank must issue collectives
// in the same order), and waited for on a worker thread, so the returned Promise never blocks the
// event loop; `sync: true` waits on the main thread instead. Tensors are written in place by the
// backend: they belong to the collective until it completes. TypeScript (lib/dist) validates
// arguments and words the errors; this file checks only what keeps memory safe.
#if defined(TORCH_LORA_DIST_GLOO) && !defined(USE_C10D_GLOO)
#define USE_C10D_GLOO
#endif
#if defined(TORCH_LORA_DIST_NCCL) && !defined(USE_C10D_NCCL)
#define USE_C10D_NCCL
#endif
#include "dist.h"
#include "errors.h"
#include "handle.h"
#include "workers.h"

#include <thread>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <unordered_set>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef TORCH_LORA_DIST_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef TORCH_LORA_DIST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace tl {

Napi::Array DistBackends(Napi::Env env) {
  std::vector<const char*> names;
#ifdef TORCH_LORA_DIST_GLOO
  names.push_back("gloo");
#endif
#ifdef TORCH_LORA_DIST_NCCL
  names.push_back("nccl");
#endif
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t k = 0; k < names.size(); ++k) out.Set(static_cast<uint32_t>(k), names[k]);
  return out;
}

namespace {

using Ms = std::chrono::milliseconds;
using WorkPtr = c10::intrusive_ptr<c10d::Work>;

// ---- options objects --------------------------------------------------------------------

Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsObject()) ThrowTypeError(info.Env(), "options: expected an object, got " + Describe(info[i]));
  return info[i].As<Napi::Object>();
}

Napi::Value Field(const Napi::Object& o, const char* name) { return o.Get(name); }

std::string StringField(const Napi::Object& o, const char* name) {
  Napi::Value v = Field(o, name);
  if (!v.IsString()) ThrowTypeError(o.Env(), std::string(name) + ": expected a string, got " + Describe(v));
  return v.As<Napi::String>().Utf8Value();
}

std::string OptionalStringField(const Napi::Object& o, const char* name) {
  Napi::Value v = Field(o, name);
  return v.IsUndefined() || v.IsNull() ? std::string() : StringField(o, name);
}

int64_t IntField(const Napi::Object& o, const char* name, int64_t lo, int64_t hi) {
  Napi::Value v = Field(o, name);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || std::floor(d) != d) {
    ThrowRangeError(o.Env(), std::string(name) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                 "], got " + Describe(v));
  }
  return static_cast<int64_t>(d);
}

double NumberField(const Napi::Object& o, const char* name, double fallback) {
  Napi::Value v = Field(o, name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) ThrowTypeError(o.Env(), std::string(name) + ": expected a number, got " + Describe(v));
  return v.As<Napi::Number>().DoubleValue();
}

bool BoolField(const Napi::Object& o, const char* name) {
  Napi::Value v = Field(o, name);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) ThrowTypeError(o.Env(), std::string(name) + ": expected a boolean, got " + Describe(v));
  return v.As<Napi::Boolean>().Value();
}

at::Tensor TensorField(const Napi::Object& o, const char* name) { return TensorValue(o.Env(), Field(o, name), name); }

std::vector<at::Tensor> TensorListField(const Napi::Object& o, const char* name) {
  Napi::Value v = Field(o, name);
  if (!v.IsArray()) ThrowTypeError(o.Env(), std::string(name) + ": expected an array of Tensors, got " + Describe(v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t k = 0; k < a.Length(); ++k) out.push_back(TensorValue(o.Env(), a.Get(k), std::string(name) + "[" + std::to_string(k) + "]"));
  return out;
}

// ---- boxes held by JS -------------------------------------------------------------------

constexpr uint64_t kStoreMagic = 0x746c2d73746f7265ULL;
constexpr uint64_t kGroupMagic = 0x746c2d67726f7570ULL;

/** One collective's work and what must follow it: on the waiting thread, then on the main thread. */
struct Pending {
  WorkPtr work;
  std::function<void()> afterWait;    // runs where the wait ran (a worker thread, or main when sync)
  std::function<void()> onMainThread; // runs on the main thread (setting a parameter's .grad)
  std::vector<at::Tensor> keepAlive;  // the tensors the backend reads or writes meanwhile
};

/** A backend's process group behind one interface (ProcessGroupGloo and ProcessGroupNCCL have
 * different bases across libtorch versions, but the same collective signatures). */
struct Group {
  virtual ~Group() = default;
  virtual WorkPtr allreduce(std::vector<at::Tensor>& t, const c10d::AllreduceOptions& o) = 0;
  virtual WorkPtr broadcast(std::vector<at::Tensor>& t, const c10d::BroadcastOptions& o) = 0;
  virtual WorkPtr allgather(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in) = 0;
  virtual WorkPtr reduceScatter(std::vector<at::Tensor>& out, std::vector<std::vector<at::Tensor>>& in, const c10d::ReduceScatterOptions& o) = 0;
  virtual WorkPtr barrier() = 0;
  /** libtorch 1.13's Gloo has no reduce_scatter: it is emulated with an all-reduce. */
  virtual bool hasReduceScatter() const = 0;
  int rank = 0, size = 1;
  Ms timeout{0};
};

template <class PG>
struct GroupOf : Group {
  c10::intrusive_ptr<PG> pg;
  bool nativeReduceScatter;
  GroupOf(c10::intrusive_ptr<PG> p, bool rs) : pg(std::move(p)), nativeReduceScatter(rs) {}
  WorkPtr allreduce(std::vector<at::Tensor>& t, const c10d::AllreduceOptions& o) override { return pg->allreduce(t, o); }
  WorkPtr broadcast(std::vector<at::Tensor>& t, const c10d::BroadcastOptions& o) override { return pg->broadcast(t, o); }
  WorkPtr allgather(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in) override { return pg->allgather(out, in); }
  WorkPtr reduceScatter(std::vector<at::Tensor>& out, std::vector<std::vector<at::Tensor>>& in, const c10d::ReduceScatterOptions& o) override {
    return pg->reduce_scatter(out, in, o);
  }
  WorkPtr barrier() override { return pg->barrier(); }
  bool hasReduceScatter() const override { return nativeReduceScatter; }
};

struct StoreBox {
  uint64_t magic = kStoreMagic;
  c10::intrusive_ptr<c10d::Store> store;
};

struct GroupBox {
  uint64_t magic = kGroupMagic;
  std::shared_ptr<Group> group;  // reset by distDestroy; in-flight work holds its own reference
};

template <class Box>
Box* BoxOf(Napi::Env env, const Napi::Value& v, uint64_t magic, const char* name, const char* what) {
  Box* box = v.IsExternal() ? v.As<Napi::External<Box>>().Data() : nullptr;
  if (box == nullptr || box->magic != magic) ThrowTypeError(env, std::string(name) + ": expected " + what + ", got " + Describe(v));
  return box;
}

std::shared_ptr<Group> GroupArg(const Napi::CallbackInfo& info, size_t i) {
  auto* box = BoxOf<GroupBox>(info.Env(), info[i], kGroupMagic, "group", "a process group");
  if (!box->group) ThrowError(info.Env(), "group: the process group was destroyed");
  return box->group;
}

// ---- waiting --------------------------------------------------------------------------

void WaitFor(const Pending& p, Ms timeout) {
  if (p.work) p.work->wait(timeout);
  if (p.afterWait) p.afterWait();
}

/** Waits here (sync) or on a worker thread (a Promise); either way the tensors stay alive. */
Napi::Value Finish(Napi::Env env, const char* name, std::shared_ptr<Group> group, Pending pending, bool sync) {
  Ms timeout = group->timeout;
  if (sync) {
    WaitFor(pending, timeout);
    if (pending.onMainThread) pending.onMainThread();
    return env.Undefined();
  }
  auto shared = std::make_shared<Pending>(std::move(pending));
  return RunAsync(
      env, name,
      [shared, group, timeout]() {
        WaitFor(*shared, timeout);
        return std::vector<at::Tensor>{};
      },
      [shared](Napi::Env env, std::vector<at::Tensor>&) -> Napi::Value {
        if (shared->onMainThread) shared->onMainThread();
        shared->keepAlive.clear();
        return env.Undefined();
      });
}

c10d::ReduceOp ParseOp(Napi::Env env, const std::string& op) {
  if (op == "sum") return c10d::ReduceOp::SUM;
  if (op == "max") return c10d::ReduceOp::MAX;
  if (op == "min") return c10d::ReduceOp::MIN;
  if (op == "product") return c10d::ReduceOp::PRODUCT;
  ThrowRangeError(env, "op: expected \"sum\", \"max\", \"min\" or \"product\", got \"" + op + "\"");
}

/** `divisor` != 1 turns a sum into a mean after the wait (Gloo in libtorch 1.13 has no AVG). */
std::function<void()> Divide(std::vector<at::Tensor> tensors, double divisor) {
  if (divisor == 1) return nullptr;
  return [tensors, divisor]() mutable {
    for (auto& t : tensors) t.div_(divisor);
  };
}

void CheckDistinct(Napi::Env env, const std::vector<at::Tensor>& ts, const char* name) {
  std::unordered_set<const void*> seen;
  for (size_t k = 0; k < ts.size(); ++k) {
    if (!seen.insert(ts[k].unsafeGetTensorImpl()).second) {
      ThrowError(env, std::string(name) + "[" + std::to_string(k) + "]: the same tensor appears more than once");
    }
  }
}

/** A flat bucket's tensors share one dtype and device, so they concatenate without casts. */
void CheckBucket(Napi::Env env, const std::vector<at::Tensor>& ts, const char* name) {
  CheckDistinct(env, ts, name);
  for (size_t k = 1; k < ts.size(); ++k) {
    if (ts[k].scalar_type() != ts[0].scalar_type() || ts[k].device() != ts[0].device()) {
      ThrowError(env, std::string(name) + "[" + std::to_string(k) + "]: a bucket holds tensors of one dtype and device (" +
                          DtypeName(ts[0].scalar_type()) + " on " + DeviceName(ts[0].device()) + "), got " +
                          DtypeName(ts[k].scalar_type()) + " on " + DeviceName(ts[k].device()));
    }
  }
}

// ---- rendezvous -------------------------------------------------------------------------

// distConnect({ host, port, isServer, rank, worldSize, timeoutMs }) -> Promise<{ store, worldSizes, claims }>
// Rank 0 serves the TCPStore; every rank then publishes its world size and claims its rank, and
// waits (up to the timeout) until every rank has published, or one disagrees. worldSizes[r] is
// what rank r said (-1: it never joined); claims counts the processes that took this rank.
Napi::Value DistConnect(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  std::string host = StringField(o, "host");
  int64_t port = IntField(o, "port", 1, 65535);
  bool isServer = BoolField(o, "isServer");
  int64_t worldSize = IntField(o, "worldSize", 1, 1 << 20);
  int64_t rank = IntField(o, "rank", 0, worldSize - 1);
  int64_t timeoutMs = IntField(o, "timeoutMs", 1, int64_t(1) << 40);
  struct Result {
    c10::intrusive_ptr<c10d::Store> store;
    std::vector<int64_t> worldSizes;
    int64_t claims = 0;
  };
  auto result = std::make_shared<Result>();
  return RunAsync(
      info.Env(), "torch-lora:distConnect",
      [=]() {
        c10d::TCPStoreOptions opts;
        opts.port = static_cast<uint16_t>(port);
        opts.isServer = isServer;
        opts.numWorkers = static_cast<size_t>(worldSize);
        opts.waitWorkers = false;  // the handshake below waits, and says who is missing
        opts.timeout = Ms(timeoutMs);
        auto store = c10::make_intrusive<c10d::TCPStore>(host, opts);
        auto str = [](int64_t v) {
          std::string s = std::to_string(v);
          return std::vector<uint8_t>(s.begin(), s.end());
        };
        const std::string prefix = "torch_lora/rendezvous/";
        store->set(prefix + "world_size/" + std::to_string(rank), str(worldSize));
        result->claims = store->add(prefix + "claim/" + std::to_string(rank), 1);
        result->worldSizes.assign(static_cast<size_t>(worldSize), -1);
        auto deadline = std::chrono::steady_clock::now() + Ms(timeoutMs);
        for (;;) {
          bool complete = true, disagree = false;
          for (int64_t r = 0; r < worldSize; ++r) {
            if (result->worldSizes[r] != -1) continue;
            std::string key = prefix + "world_size/" + std::to_string(r);
            if (!store->check({key})) {
              complete = false;
              continue;
            }
            std::vector<uint8_t> v = store->get(key);
            result->worldSizes[r] = std::stoll(std::string(v.begin(), v.end()));
            disagree |= result->worldSizes[r] != worldSize;
          }
          if (complete || disagree || std::chrono::steady_clock::now() >= deadline) break;
          std::this_thread::sleep_for(Ms(5));
        }
        result->store = store;
        return std::vector<at::Tensor>{};
      },
      [result](Napi::Env env, std::vector<at::Tensor>&) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        auto* box = new StoreBox();
        box->store = std::move(result->store);
        out.Set("store", Napi::External<StoreBox>::New(env, box, [](Napi::Env, StoreBox* b) {
                  b->magic = 0;
                  delete b;
                }));
        Napi::Array sizes = Napi::Array::New(env, result->worldSizes.size());
        for (size_t r = 0; r < result->worldSizes.size(); ++r) sizes.Set(static_cast<uint32_t>(r), static_cast<double>(result->worldSizes[r]));
        out.Set("worldSizes", sizes);
        out.Set("claims", static_cast<double>(result->claims));
        return out;
      });
}

// distNewGroup({ store, backend, rank, worldSize, timeoutMs, deviceHostname?, deviceInterface? })
//   -> Promise<group>. Connects the backend's full mesh through the store (blocks until every
//   rank has arrived, or the timeout).
Napi::Value DistNewGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  auto* storeBox = BoxOf<StoreBox>(env, Field(o, "store"), kStoreMagic, "store", "a rendezvous store");
  std::string backend = StringField(o, "backend");
  int64_t worldSize = IntField(o, "worldSize", 1, 1 << 20);
  int64_t rank = IntField(o, "rank", 0, worldSize - 1);
  int64_t timeoutMs = IntField(o, "timeoutMs", 1, int64_t(1) << 40);
  std::string hostname = OptionalStringField(o, "deviceHostname");
  std::string iface = OptionalStringField(o, "deviceInterface");
  if (backend != "gloo" && backend != "nccl") ThrowRangeError(env, "backend: expected \"gloo\" or \"nccl\", got \"" + backend + "\"");
#ifndef TORCH_LORA_DIST_GLOO
  if (backend == "gloo") ThrowError(env, "backend: gloo is not compiled into this addon");
#endif
#ifndef TORCH_LORA_DIST_NCCL
  if (backend == "nccl") ThrowError(env, "backend: nccl is not compiled into this addon");
#endif
  auto store = c10::make_intrusive<c10d::PrefixStore>("torch_lora/default_pg", storeBox->store);
  auto result = std::make_shared<std::shared_ptr<Group>>();
  return RunAsync(
      env, "torch-lora:distNewGroup",
      [=]() {
        std::shared_ptr<Group> group;
#ifdef TORCH_LORA_DIST_GLOO
        if (backend == "gloo") {
          auto opts = c10d::ProcessGroupGloo::Options::create(Ms(timeoutMs));
          opts->devices.push_back(!iface.empty()      ? c10d::ProcessGroupGloo::createDeviceForInterface(iface)
                                  : !hostname.empty() ? c10d::ProcessGroupGloo::createDeviceForHostname(hostname)
                                                      : c10d::ProcessGroupGloo::createDefaultDevice());
          auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(rank), static_cast<int>(worldSize), opts);
          group = std::make_shared<GroupOf<c10d::ProcessGroupGloo>>(pg, false);
        }
#endif
#ifdef TORCH_LORA_DIST_NCCL
        if (backend == "nccl") {
          auto opts = c10d::ProcessGroupNCCL::Options::create();
          opts->timeout = Ms(timeoutMs);
          auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, static_cast<int>(rank), static_cast<int>(worldSize), opts);
          group = std::make_shared<GroupOf<c10d::ProcessGroupNCCL>>(pg, true);
        }
#endif
        if (!group) throw std::runtime_error("backend " + backend + " is not compiled into this addon");
        group->rank = static_cast<int>(rank);
        group->size = static_cast<int>(worldSize);
        group->timeout = Ms(timeoutMs);
        *result = group;
        return std::vector<at::Tensor>{};
      },
      [result](Napi::Env env, std::vector<at::Tensor>&) -> Napi::Value {
        auto* box = new GroupBox();
        box->group = std::move(*result);
        return Napi::External<GroupBox>::New(env, box, [](Napi::Env, GroupBox* b) {
          b->magic = 0;
          delete b;  // the last reference may be an in-flight collective's, which ends it later
        });
      });
}

// distDestroy(group): drops this handle's reference; collectives in flight finish first.
Napi::Value DistDestroy(const Napi::CallbackInfo& info) {
  auto* box = BoxOf<GroupBox>(info.Env(), info[0], kGroupMagic, "group", "a process group");
  box->group.reset();
  return info.Env().Undefined();
}

// ---- collectives ------------------------------------------------------------------------

// distAllReduce(group, { tensors, op, divisor, sync })
Napi::Value DistAllReduce(const Napi::CallbackInfo& info) {
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> tensors = TensorListField(o, "tensors");
  CheckDistinct(info.Env(), tensors, "tensors");
  c10d::AllreduceOptions opts;
  opts.reduceOp = ParseOp(info.Env(), StringField(o, "op"));
  Pending p;
  p.work = group->allreduce(tensors, opts);
  p.afterWait = Divide(tensors, NumberField(o, "divisor", 1));
  p.keepAlive = tensors;
  return Finish(info.Env(), "torch-lora:allReduce", group, std::move(p), BoolField(o, "sync"));
}

// distBroadcast(group, { tensors, root, sync })
Napi::Value DistBroadcast(const Napi::CallbackInfo& info) {
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> tensors = TensorListField(o, "tensors");
  CheckDistinct(info.Env(), tensors, "tensors");
  c10d::BroadcastOptions opts;
  opts.rootRank = IntField(o, "root", 0, group->size - 1);
  Pending p;
  p.work = group->broadcast(tensors, opts);
  p.keepAlive = tensors;
  return Finish(info.Env(), "torch-lora:broadcast", group, std::move(p), BoolField(o, "sync"));
}

// distAllGather(group, { outputs (one per rank), input, sync })
Napi::Value DistAllGather(const Napi::CallbackInfo& info) {
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> outputs = TensorListField(o, "outputs");
  std::vector<at::Tensor> inputs{TensorField(o, "input")};
  if (static_cast<int>(outputs.size()) != group->size) ThrowRangeError(info.Env(), "outputs: expected one tensor per rank");
  CheckDistinct(info.Env(), outputs, "outputs");
  std::vector<std::vector<at::Tensor>> outs{outputs};
  Pending p;
  p.work = group->allgather(outs, inputs);
  p.keepAlive = outputs;
  p.keepAlive.push_back(inputs[0]);
  return Finish(info.Env(), "torch-lora:allGather", group, std::move(p), BoolField(o, "sync"));
}

// distReduceScatter(group, { output, inputs (one per rank), op, divisor, sync })
Napi::Value DistReduceScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  at::Tensor output = TensorField(o, "output");
  std::vector<at::Tensor> inputs = TensorListField(o, "inputs");
  if (static_cast<int>(inputs.size()) != group->size) ThrowRangeError(env, "inputs: expected one tensor per rank");
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].sizes().equals(output.sizes()) || inputs[k].scalar_type() != output.scalar_type() || inputs[k].device() != output.device()) {
      ThrowError(env, "inputs[" + std::to_string(k) + "]: must match output in shape, dtype and device");
    }
  }
  c10d::ReduceOp op = ParseOp(env, StringField(o, "op"));
  double divisor = NumberField(o, "divisor", 1);
  Pending p;
  if (group->hasReduceScatter()) {
    std::vector<at::Tensor> outs{output};
    std::vector<std::vector<at::Tensor>> ins{inputs};
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = op;
    p.work = group->reduceScatter(outs, ins, opts);
    p.afterWait = Divide(outs, divisor);
  } else {
    // All-reduce the stacked inputs, then keep this rank's slice: worldSize times the traffic of
    // a true reduce-scatter, the same result.
    std::vector<at::Tensor> stacked{at::stack(inputs)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = op;
    p.work = group->allreduce(stacked, opts);
    int rank = group->rank;
    p.afterWait = [stacked, output, rank, divisor]() mutable {
      at::Tensor mine = stacked[0].select(0, rank);
      if (divisor != 1) mine = mine / divisor;
      output.copy_(mine);
    };
    p.keepAlive = stacked;
  }
  p.keepAlive.push_back(output);
  for (auto& t : inputs) p.keepAlive.push_back(t);
  return Finish(env, "torch-lora:reduceScatter", group, std::move(p), BoolField(o, "sync"));
}

// distBarrier(group, { sync })
Napi::Value DistBarrier(const Napi::CallbackInfo& info) {
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  Pending p;
  p.work = group->barrier();
  return Finish(info.Env(), "torch-lora:barrier", group, std::move(p), BoolField(o, "sync"));
}

// distAllReduceGrads(group, { params, divisor, sync }): one bucket of gradient averaging.
// Flattens the parameters' gradients (zeros where a parameter has none) into one buffer,
// all-reduces it, divides, and writes the slices back as the gradients, on the main thread.
Napi::Value DistAllReduceGrads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> params = TensorListField(o, "params");
  CheckBucket(env, params, "params");
  double divisor = NumberField(o, "divisor", 1);
  if (params.empty()) return Finish(env, "torch-lora:allReduceGrads", group, Pending{}, BoolField(o, "sync"));
  std::vector<at::Tensor> pieces;
  for (size_t k = 0; k < params.size(); ++k) {
    const at::Tensor& g = params[k].grad();
    if (g.defined() && !g.sizes().equals(params[k].sizes())) {
      ThrowError(env, "params[" + std::to_string(k) + "].grad: its shape differs from the parameter's");
    }
    pieces.push_back(g.defined() ? g.reshape(-1).to(params[k].scalar_type()) : at::zeros({params[k].numel()}, params[k].options()));
  }
  std::vector<at::Tensor> flat{at::cat(pieces)};
  Pending p;
  p.work = group->allreduce(flat, c10d::AllreduceOptions());
  p.afterWait = Divide(flat, divisor);
  p.onMainThread = [params, flat]() mutable {
    at::NoGradGuard noGrad;
    int64_t offset = 0;
    for (auto& param : params) {
      at::Tensor slice = flat[0].narrow(0, offset, param.numel()).view(param.sizes());
      offset += param.numel();
      at::Tensor& g = param.mutable_grad();
      if (g.defined()) {
        g.copy_(slice);
      } else {
        g = slice.clone();
      }
    }
  };
  p.keepAlive = flat;
  return Finish(env, "torch-lora:allReduceGrads", group, std::move(p), BoolField(o, "sync"));
}

// distBroadcastFlat(group, { tensors, root, sync }): one flat broadcast of many tensors (the
// trainable parameters at start), copied back in place on the main thread.
Napi::Value DistBroadcastFlat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> tensors = TensorListField(o, "tensors");
  CheckBucket(env, tensors, "tensors");
  if (tensors.empty()) return Finish(env, "torch-lora:broadcastFlat", group, Pending{}, BoolField(o, "sync"));
  std::vector<at::Tensor> pieces;
  for (auto& t : tensors) pieces.push_back(t.detach().reshape(-1));
  std::vector<at::Tensor> flat{at::cat(pieces)};
  c10d::BroadcastOptions opts;
  opts.rootRank = IntField(o, "root", 0, group->size - 1);
  Pending p;
  p.work = group->broadcast(flat, opts);
  p.onMainThread = [tensors, flat]() mutable {
    at::NoGradGuard noGrad;
    int64_t offset = 0;
    for (auto& t : tensors) {
      t.detach().copy_(flat[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  };
  p.keepAlive = flat;
  return Finish(env, "torch-lora:broadcastFlat", group, std::move(p), BoolField(o, "sync"));
}

// ---- gradient all-reduce overlapped with backward ----------------------------------------

constexpr uint64_t kReducerMagic = 0x746c2d7265647563ULL;

// Starts each bucket's all-reduce from autograd while backward is still running, as DDP's
// reducer does: a post hook on every parameter's gradient accumulator copies the finished
// gradient into its bucket's flat buffer, and once a bucket is complete, it and every complete
// bucket after it are launched, strictly in bucket order (the order must be the same on every
// rank, whatever order the hooks fire in). finish() launches what backward left (a parameter
// without a gradient counts as zeros), and the caller waits and writes the averages back.
struct Reducer {
  struct Bucket {
    std::vector<at::Tensor> params;
    std::vector<int64_t> offsets;
    std::vector<bool> ready;
    size_t pending = 0;
    at::Tensor flat;
    WorkPtr work;
  };
  std::shared_ptr<Group> group;
  std::vector<Bucket> buckets;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;  // kept alive: the hooks live on them
  std::vector<uintptr_t> hookKeys;
  std::mutex mu;
  size_t nextLaunch = 0;
  bool finishing = false;
  std::string misuse;  // set when a gradient changed after its bucket's all-reduce had started

  void Reset() {
    for (auto& b : buckets) {
      std::fill(b.ready.begin(), b.ready.end(), false);
      b.pending = b.params.size();
      b.work.reset();
    }
    nextLaunch = 0;
    finishing = false;
  }

  // Called with mu held.
  void LaunchReady() {
    while (nextLaunch < buckets.size() && buckets[nextLaunch].pending == 0) {
      std::vector<at::Tensor> flat{buckets[nextLaunch].flat};
      buckets[nextLaunch].work = group->allreduce(flat, c10d::AllreduceOptions());
      ++nextLaunch;
    }
  }

  void OnGradReady(size_t b, size_t slot) {
    std::lock_guard<std::mutex> lock(mu);
    Bucket& bucket = buckets[b];
    if (b < nextLaunch || finishing) {
      misuse = "a gradient changed after its all-reduce had started (two backward passes before one syncGradients?)";
      return;
    }
    at::NoGradGuard noGrad;
    const at::Tensor& g = bucket.params[slot].grad();
    at::Tensor dst = bucket.flat.narrow(0, bucket.offsets[slot], bucket.params[slot].numel());
    if (g.defined()) dst.copy_(g.reshape(-1));
    else dst.zero_();
    if (!bucket.ready[slot]) {
      bucket.ready[slot] = true;
      --bucket.pending;
    }
    LaunchReady();
  }

  void RemoveHooks() {
    for (size_t k = 0; k < accumulators.size(); ++k) accumulators[k]->del_post_hook(hookKeys[k]);
    accumulators.clear();
    hookKeys.clear();
  }
};

struct ReducerHook : torch::autograd::FunctionPostHook {
  std::weak_ptr<Reducer> reducer;
  size_t bucket, slot;
  ReducerHook(std::weak_ptr<Reducer> r, size_t b, size_t s) : reducer(std::move(r)), bucket(b), slot(s) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) override {
    if (auto r = reducer.lock()) r->OnGradReady(bucket, slot);
    return outputs;
  }
};

struct ReducerBox {
  uint64_t magic = kReducerMagic;
  std::shared_ptr<Reducer> reducer;
};

void ReleaseReducer(ReducerBox* box) {
  if (box->reducer) box->reducer->RemoveHooks();
  box->reducer.reset();
}

// distReducerNew(group, { buckets: H[][] }) -> reducer: hooks on every parameter's accumulator.
Napi::Value DistReducerNew(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  Napi::Value bv = Field(o, "buckets");
  if (!bv.IsArray()) ThrowTypeError(env, "buckets: expected an array of arrays of Tensors, got " + Describe(bv));
  Napi::Array ba = bv.As<Napi::Array>();
  auto reducer = std::make_shared<Reducer>();
  reducer->group = group;
  std::vector<at::Tensor> all;
  for (uint32_t b = 0; b < ba.Length(); ++b) {
    Napi::Object holder = Napi::Object::New(env);
    holder.Set("params", ba.Get(b));
    std::string name = "buckets[" + std::to_string(b) + "]";
    std::vector<at::Tensor> params = TensorListField(holder, "params");
    CheckBucket(env, params, name.c_str());
    if (params.empty()) ThrowError(env, name + ": a bucket holds at least one tensor");
    Reducer::Bucket bucket;
    int64_t offset = 0;
    for (size_t k = 0; k < params.size(); ++k) {
      if (!params[k].is_leaf() || !params[k].requires_grad()) {
        ThrowError(env, name + "[" + std::to_string(k) + "]: expected a leaf tensor that requires grad");
      }
      bucket.offsets.push_back(offset);
      offset += params[k].numel();
      all.push_back(params[k]);
    }
    bucket.flat = at::zeros({offset}, params[0].options().requires_grad(false));
    bucket.params = std::move(params);
    bucket.ready.assign(bucket.params.size(), false);
    bucket.pending = bucket.params.size();
    reducer->buckets.push_back(std::move(bucket));
  }
  CheckDistinct(env, all, "buckets (all)");
  for (size_t b = 0; b < reducer->buckets.size(); ++b) {
    for (size_t k = 0; k < reducer->buckets[b].params.size(); ++k) {
      auto acc = torch::autograd::impl::grad_accumulator(reducer->buckets[b].params[k]);
      if (!acc) ThrowError(env, "buckets: a parameter has no gradient accumulator");
      reducer->hookKeys.push_back(acc->add_post_hook(std::make_unique<ReducerHook>(reducer, b, k)));
      reducer->accumulators.push_back(std::move(acc));
    }
  }
  auto* box = new ReducerBox();
  box->reducer = std::move(reducer);
  return Napi::External<ReducerBox>::New(env, box, [](Napi::Env, ReducerBox* b) {
    ReleaseReducer(b);
    b->magic = 0;
    delete b;
  });
}

std::shared_ptr<Reducer> ReducerArg(const Napi::CallbackInfo& info, size_t i) {
  auto* box = BoxOf<ReducerBox>(info.Env(), info[i], kReducerMagic, "reducer", "a gradient reducer");
  if (!box->reducer) ThrowError(info.Env(), "reducer: it was released");
  return box->reducer;
}

// distReducerFinish(reducer, { divisor, sync }): launches the buckets backward left, waits for
// all, divides, and writes the averages back as the gradients; then rearms for the next step.
Napi::Value DistReducerFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Reducer> r = ReducerArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  double divisor = NumberField(o, "divisor", 1);
  bool sync = BoolField(o, "sync");
  std::vector<WorkPtr> works;
  std::vector<at::Tensor> flats;
  {
    std::lock_guard<std::mutex> lock(r->mu);
    if (r->finishing) ThrowError(env, "syncGradients: the previous call has not finished");
    at::NoGradGuard noGrad;
    for (auto& b : r->buckets) {
      for (size_t k = 0; k < b.params.size(); ++k) {
        if (b.ready[k]) continue;
        // No hook fired for it in this step (unused, or no backward ran): its current gradient, or zeros.
        const at::Tensor& g = b.params[k].grad();
        at::Tensor dst = b.flat.narrow(0, b.offsets[k], b.params[k].numel());
        if (g.defined()) dst.copy_(g.reshape(-1));
        else dst.zero_();
        b.ready[k] = true;
        --b.pending;
      }
    }
    r->LaunchReady();
    r->finishing = true;
    for (auto& b : r->buckets) {
      works.push_back(b.work);
      flats.push_back(b.flat);
    }
  }
  Pending p;
  Ms timeout = r->group->timeout;
  p.afterWait = [works, flats, divisor, timeout]() mutable {
    for (auto& w : works) w->wait(timeout);
    if (divisor != 1) for (auto& f : flats) f.div_(divisor);
  };
  p.onMainThread = [r]() {
    std::lock_guard<std::mutex> lock(r->mu);
    at::NoGradGuard noGrad;
    for (auto& b : r->buckets) {
      for (size_t k = 0; k < b.params.size(); ++k) {
        at::Tensor slice = b.flat.narrow(0, b.offsets[k], b.params[k].numel()).view(b.params[k].sizes());
        at::Tensor& g = b.params[k].mutable_grad();
        if (g.defined()) g.copy_(slice);
        else g = slice.clone();
      }
    }
    r->Reset();
    if (!r->misuse.empty()) {
      std::string m = r->misuse;
      r->misuse.clear();
      throw std::runtime_error(m);
    }
  };
  p.keepAlive = flats;
  return Finish(env, "torch-lora:reducerFinish", r->group, std::move(p), sync);
}

// distReducerStarted(reducer) -> how many buckets' all-reduces have started in this step so far
// (read before syncGradients: those started by backward's hooks).
Napi::Value DistReducerStarted(const Napi::CallbackInfo& info) {
  std::shared_ptr<Reducer> r = ReducerArg(info, 0);
  std::lock_guard<std::mutex> lock(r->mu);
  return Napi::Number::New(info.Env(), static_cast<double>(r->nextLaunch));
}

// distReducerRelease(reducer): removes the hooks now (idempotent).
Napi::Value DistReducerRelease(const Napi::CallbackInfo& info) {
  auto* box = BoxOf<ReducerBox>(info.Env(), info[0], kReducerMagic, "reducer", "a gradient reducer");
  ReleaseReducer(box);
  return info.Env().Undefined();
}

// ---- threads ----------------------------------------------------------------------------

// setNumThreads(n): libtorch's intra-op thread count (at::set_num_threads).
Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int64_t n = IntArg(info, 0, "n");
  if (n < 1 || n > 4096) ThrowRangeError(info.Env(), "n: expected an integer in [1, 4096], got " + std::to_string(n));
  at::set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), at::get_num_threads()); }

// randpermSeeded(n, seed): torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on
// the CPU, so a sampler's shuffle is the permutation PyTorch's DistributedSampler draws, without
// touching the global generator.
Napi::Value RandpermSeeded(const Napi::CallbackInfo& info) {
  int64_t n = IntArg(info, 0, "n");
  int64_t seed = IntArg(info, 1, "seed");
  if (n < 0) ThrowRangeError(info.Env(), "n: expected an integer >= 0, got " + std::to_string(n));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  return WrapTensor(info.Env(), at::randperm(n, gen, at::TensorOptions().dtype(at::kLong)));
}

Napi::Value DistBackendsEntry(const Napi::CallbackInfo& info) { return DistBackends(info.Env()); }

}  // namespace

void RegisterDist(Napi::Object exports) {
  TL_EXPORT(exports, "distBackends", DistBackendsEntry);
  TL_EXPORT(exports, "distConnect", DistConnect);
  TL_EXPORT(exports, "distNewGroup", DistNewGroup);
  TL_EXPORT(exports, "distDestroy", DistDestroy);
  TL_EXPORT(exports, "distAllReduce", DistAllReduce);
  TL_EXPORT(exports, "distBroadcast", DistBroadcast);
  TL_EXPORT(exports, "distAllGather", DistAllGather);
  TL_EXPORT(exports, "distReduceScatter", DistReduceScatter);
  TL_EXPORT(exports, "distBarrier", DistBarrier);
  TL_EXPORT(exports, "distAllReduceGrads", DistAllReduceGrads);
  TL_EXPORT(exports, "distBroadcastFlat", DistBroadcastFlat);
  TL_EXPORT(exports, "distReducerNew", DistReducerNew);
  TL_EXPORT(exports, "distReducerFinish", DistReducerFinish);
  TL_EXPORT(exports, "distReducerRelease", DistReducerRelease);
  TL_EXPORT(exports, "distReducerStarted", DistReducerStarted);
  TL_EXPORT(exports, "randpermSeeded", RandpermSeeded);
  TL_EXPORT(exports, "setNumThreads", SetNumThreads);
  TL_EXPORT(exports, "getNumThreads", GetNumThreads);
}

}  // namespace tl
