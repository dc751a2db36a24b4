// Shared by the c10d files: the wait on a collective, argument checks.
#include "dist_common.h"
#include "handle.h"
#include "workers.h"

#include <cmath>
#include <unordered_set>

namespace tl {
namespace dist {

std::shared_ptr<Group> GroupArg(const Napi::CallbackInfo& info, size_t i) {
  auto* box = BoxOf<GroupBox>(info.Env(), info[i], kGroupMagic, "group", "a process group");
  if (!box->group) ThrowError(info.Env(), "group: the process group was destroyed");
  return box->group;
}

// ---- waiting --------------------------------------------------------------------------

namespace {

void WaitFor(const Pending& p, Ms timeout) {
  if (p.work) p.work->wait(timeout);
  if (p.afterWait) p.afterWait();
}

}  // namespace

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

void CheckContiguous(Napi::Env env, const std::vector<at::Tensor>& ts, const char* name) {
  for (size_t k = 0; k < ts.size(); ++k) {
    if (!ts[k].is_contiguous()) {
      ThrowError(env, std::string(name) + "[" + std::to_string(k) +
                          "]: a collective needs a contiguous tensor (a transposed, sliced or expanded view is not); pass .contiguous() "
                          "and copy the result back");
    }
  }
}

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

}  // namespace dist
}  // namespace tl
