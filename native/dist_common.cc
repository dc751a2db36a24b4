// Shared by the c10d files: option readers, the wait on a collective, argument checks.
#include "dist_common.h"
#include "handle.h"
#include "workers.h"

#include <cmath>
#include <unordered_set>

namespace tl {
namespace dist {

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
    ThrowRangeError(o.Env(), std::string(name) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                 Describe(v));
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
  for (uint32_t k = 0; k < a.Length(); ++k)
    out.push_back(TensorValue(o.Env(), a.Get(k), std::string(name) + "[" + std::to_string(k) + "]"));
  return out;
}

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
