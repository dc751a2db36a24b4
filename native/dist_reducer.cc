// Gradient all-reduces overlapped with backward (DataParallel's `overlap` option).
#include "dist_common.h"
#include "handle.h"

#include <mutex>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace tl {
namespace dist {
namespace {

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
    if (g.defined())
      dst.copy_(g.reshape(-1));
    else
      dst.zero_();
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
  Napi::Value bv = o.Get("buckets");
  if (!bv.IsArray()) ThrowTypeError(env, "buckets: expected an array of arrays of Tensors, got " + Describe(bv));
  Napi::Array ba = bv.As<Napi::Array>();
  auto reducer = std::make_shared<Reducer>();
  reducer->group = group;
  std::vector<at::Tensor> all;
  for (uint32_t b = 0; b < ba.Length(); ++b) {
    std::string name = "buckets[" + std::to_string(b) + "]";
    std::vector<at::Tensor> params = TensorListValue(env, ba.Get(b), name);
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
  double divisor = NumberOption(o, "divisor", 1);
  bool sync = BoolOption(o, "sync", false);
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
        if (g.defined())
          dst.copy_(g.reshape(-1));
        else
          dst.zero_();
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
    if (divisor != 1)
      for (auto& f : flats) f.div_(divisor);
  };
  p.onMainThread = [r]() {
    std::lock_guard<std::mutex> lock(r->mu);
    at::NoGradGuard noGrad;
    for (auto& b : r->buckets) {
      for (size_t k = 0; k < b.params.size(); ++k) {
        at::Tensor slice = b.flat.narrow(0, b.offsets[k], b.params[k].numel()).view(b.params[k].sizes());
        at::Tensor& g = b.params[k].mutable_grad();
        if (g.defined())
          g.copy_(slice);
        else
          g = slice.clone();
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

}  // namespace

void RegisterReducer(Napi::Object exports) {
  TL_EXPORT(exports, "distReducerNew", DistReducerNew);
  TL_EXPORT(exports, "distReducerFinish", DistReducerFinish);
  TL_EXPORT(exports, "distReducerRelease", DistReducerRelease);
  TL_EXPORT(exports, "distReducerStarted", DistReducerStarted);
}

}  // namespace dist
}  // namespace tl
