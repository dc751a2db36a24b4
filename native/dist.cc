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
#include "dist_common.h"
#include "handle.h"
#include "workers.h"

#include <thread>

#include <ATen/CPUGeneratorImpl.h>

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

using namespace dist;

constexpr uint64_t kStoreMagic = 0x746c2d73746f7265ULL;

template <class PG>
struct GroupOf : Group {
  c10::intrusive_ptr<PG> pg;
  bool nativeReduceScatter;
  GroupOf(c10::intrusive_ptr<PG> p, bool rs) : pg(std::move(p)), nativeReduceScatter(rs) {}
  WorkPtr allreduce(std::vector<at::Tensor>& t, const c10d::AllreduceOptions& o) override { return pg->allreduce(t, o); }
  WorkPtr broadcast(std::vector<at::Tensor>& t, const c10d::BroadcastOptions& o) override { return pg->broadcast(t, o); }
  WorkPtr allgather(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in) override { return pg->allgather(out, in); }
  WorkPtr reduceScatter(std::vector<at::Tensor>& out, std::vector<std::vector<at::Tensor>>& in,
                        const c10d::ReduceScatterOptions& o) override {
    return pg->reduce_scatter(out, in, o);
  }
  WorkPtr barrier() override { return pg->barrier(); }
  bool hasReduceScatter() const override { return nativeReduceScatter; }
};

struct StoreBox {
  uint64_t magic = kStoreMagic;
  c10::intrusive_ptr<c10d::Store> store;
};

// ---- rendezvous -------------------------------------------------------------------------

// distConnect({ host, port, isServer, rank, worldSize, timeoutMs }) -> Promise<{ store, worldSizes, claims }>
// Rank 0 serves the TCPStore; every rank then publishes its world size and claims its rank, and
// waits (up to the timeout) until every rank has published, or one disagrees. worldSizes[r] is
// what rank r said (-1: it never joined); claims counts the processes that took this rank.
Napi::Value DistConnect(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  std::string host = StringOption(o, "host");
  int64_t port = IntOption(o, "port", 1, 65535);
  bool isServer = BoolOption(o, "isServer", false);
  int64_t worldSize = IntOption(o, "worldSize", 1, 1 << 20);
  int64_t rank = IntOption(o, "rank", 0, worldSize - 1);
  int64_t timeoutMs = IntOption(o, "timeoutMs", 1, int64_t(1) << 40);
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
        for (size_t r = 0; r < result->worldSizes.size(); ++r)
          sizes.Set(static_cast<uint32_t>(r), static_cast<double>(result->worldSizes[r]));
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
  auto* storeBox = BoxOf<StoreBox>(env, o.Get("store"), kStoreMagic, "store", "a rendezvous store");
  std::string backend = StringOption(o, "backend");
  int64_t worldSize = IntOption(o, "worldSize", 1, 1 << 20);
  int64_t rank = IntOption(o, "rank", 0, worldSize - 1);
  int64_t timeoutMs = IntOption(o, "timeoutMs", 1, int64_t(1) << 40);
  std::string hostname = OptionalStringOption(o, "deviceHostname").value_or("");
  std::string iface = OptionalStringOption(o, "deviceInterface").value_or("");
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
  std::vector<at::Tensor> tensors = TensorListOption(o, "tensors");
  CheckDistinct(info.Env(), tensors, "tensors");
  CheckContiguous(info.Env(), tensors, "tensors");
  c10d::AllreduceOptions opts;
  opts.reduceOp = ParseOp(info.Env(), StringOption(o, "op"));
  Pending p;
  p.work = group->allreduce(tensors, opts);
  MarkWritten(tensors);
  p.afterWait = Divide(tensors, NumberOption(o, "divisor", 1));
  p.keepAlive = tensors;
  return Finish(info.Env(), "torch-lora:allReduce", group, std::move(p), BoolOption(o, "sync", false));
}

// distBroadcast(group, { tensors, root, sync })
Napi::Value DistBroadcast(const Napi::CallbackInfo& info) {
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> tensors = TensorListOption(o, "tensors");
  CheckDistinct(info.Env(), tensors, "tensors");
  CheckContiguous(info.Env(), tensors, "tensors");
  c10d::BroadcastOptions opts;
  opts.rootRank = IntOption(o, "root", 0, group->size - 1);
  Pending p;
  p.work = group->broadcast(tensors, opts);
  MarkWritten(tensors);
  p.keepAlive = tensors;
  return Finish(info.Env(), "torch-lora:broadcast", group, std::move(p), BoolOption(o, "sync", false));
}

// distAllGather(group, { outputs (one per rank), input, sync })
Napi::Value DistAllGather(const Napi::CallbackInfo& info) {
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> outputs = TensorListOption(o, "outputs");
  std::vector<at::Tensor> inputs{TensorOption(o, "input")};
  if (static_cast<int>(outputs.size()) != group->size) ThrowRangeError(info.Env(), "outputs: expected one tensor per rank");
  CheckDistinct(info.Env(), outputs, "outputs");
  CheckContiguous(info.Env(), outputs, "outputs");
  CheckContiguous(info.Env(), inputs, "input");
  std::vector<std::vector<at::Tensor>> outs{outputs};
  Pending p;
  p.work = group->allgather(outs, inputs);
  p.keepAlive = outputs;
  p.keepAlive.push_back(inputs[0]);
  return Finish(info.Env(), "torch-lora:allGather", group, std::move(p), BoolOption(o, "sync", false));
}

// distReduceScatter(group, { output, inputs (one per rank), op, divisor, sync })
Napi::Value DistReduceScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  at::Tensor output = TensorOption(o, "output");
  std::vector<at::Tensor> inputs = TensorListOption(o, "inputs");
  if (static_cast<int>(inputs.size()) != group->size) ThrowRangeError(env, "inputs: expected one tensor per rank");
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].sizes().equals(output.sizes()) || inputs[k].scalar_type() != output.scalar_type() ||
        inputs[k].device() != output.device()) {
      ThrowError(env, "inputs[" + std::to_string(k) + "]: must match output in shape, dtype and device");
    }
  }
  CheckContiguous(env, {output}, "output");
  CheckContiguous(env, inputs, "inputs");
  c10d::ReduceOp op = ParseOp(env, StringOption(o, "op"));
  double divisor = NumberOption(o, "divisor", 1);
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
  return Finish(env, "torch-lora:reduceScatter", group, std::move(p), BoolOption(o, "sync", false));
}

// distBarrier(group, { sync })
Napi::Value DistBarrier(const Napi::CallbackInfo& info) {
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  Pending p;
  p.work = group->barrier();
  return Finish(info.Env(), "torch-lora:barrier", group, std::move(p), BoolOption(o, "sync", false));
}

// distAllReduceGrads(group, { params, divisor, sync }): one bucket of gradient averaging.
// Flattens the parameters' gradients (zeros where a parameter has none) into one buffer,
// all-reduces it, divides, and writes the slices back as the gradients, on the main thread.
Napi::Value DistAllReduceGrads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> params = TensorListOption(o, "params");
  CheckBucket(env, params, "params");
  double divisor = NumberOption(o, "divisor", 1);
  if (params.empty()) return Finish(env, "torch-lora:allReduceGrads", group, Pending{}, BoolOption(o, "sync", false));
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
  return Finish(env, "torch-lora:allReduceGrads", group, std::move(p), BoolOption(o, "sync", false));
}

// distBroadcastFlat(group, { tensors, root, sync }): one flat broadcast of many tensors (the
// trainable parameters at start), copied back in place on the main thread.
Napi::Value DistBroadcastFlat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto group = GroupArg(info, 0);
  Napi::Object o = OptionsArg(info, 1);
  std::vector<at::Tensor> tensors = TensorListOption(o, "tensors");
  CheckBucket(env, tensors, "tensors");
  if (tensors.empty()) return Finish(env, "torch-lora:broadcastFlat", group, Pending{}, BoolOption(o, "sync", false));
  std::vector<at::Tensor> pieces;
  for (auto& t : tensors) pieces.push_back(t.detach().reshape(-1));
  std::vector<at::Tensor> flat{at::cat(pieces)};
  c10d::BroadcastOptions opts;
  opts.rootRank = IntOption(o, "root", 0, group->size - 1);
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
  return Finish(env, "torch-lora:broadcastFlat", group, std::move(p), BoolOption(o, "sync", false));
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
  dist::RegisterReducer(exports);
  TL_EXPORT(exports, "randpermSeeded", RandpermSeeded);
  TL_EXPORT(exports, "setNumThreads", SetNumThreads);
  TL_EXPORT(exports, "getNumThreads", GetNumThreads);
}

}  // namespace tl
