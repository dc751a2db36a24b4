#include "options.h"
#include "errors.h"
#include "handle.h"

namespace tl {
namespace {

bool IsExactInteger(double d) {
  // Beyond 2^53 a double is no longer an exact integer, and casting one past 2^63 is undefined.
  return std::isfinite(d) && std::floor(d) == d && std::fabs(d) <= 9007199254740991.0;
}

int64_t IntValue(Napi::Env env, const Napi::Value& v, const std::string& label) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!IsExactInteger(d)) ThrowTypeError(env, label + ": expected an integer, got " + Describe(v));
  return static_cast<int64_t>(d);
}

/** Field `key` as an array; a TypeError saying what its elements should be otherwise. */
Napi::Array ArrayField(const Napi::Object& options, const char* key, const char* elements) {
  Napi::Value v = options.Get(key);
  if (!v.IsArray()) ThrowTypeError(options.Env(), std::string(key) + ": expected an array of " + elements + ", got " + Describe(v));
  return v.As<Napi::Array>();
}

std::string Element(const char* key, uint32_t k) { return std::string(key) + "[" + std::to_string(k) + "]"; }

}  // namespace

Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsObject() || v.IsArray() || v.IsExternal()) {
    ThrowTypeError(info.Env(), std::string(name) + ": expected an options object, got " + Describe(v));
  }
  return v.As<Napi::Object>();
}

int64_t IntOption(const Napi::Object& options, const char* key) { return IntValue(options.Env(), options.Get(key), key); }

int64_t IntOption(const Napi::Object& options, const char* key, int64_t lo, int64_t hi) {
  Napi::Value v = options.Get(key);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || std::floor(d) != d) {
    ThrowRangeError(options.Env(), std::string(key) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                       "], got " + Describe(v));
  }
  return static_cast<int64_t>(d);
}

c10::optional<int64_t> OptionalIntOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined() || v.IsNull()) return c10::nullopt;
  return IntValue(options.Env(), v, key);
}

double NumberOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (!v.IsNumber()) ThrowTypeError(options.Env(), std::string(key) + ": expected a number, got " + Describe(v));
  return v.As<Napi::Number>().DoubleValue();
}

double NumberOption(const Napi::Object& options, const char* key, double fallback) {
  return options.Get(key).IsUndefined() ? fallback : NumberOption(options, key);
}

bool BoolOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (!v.IsBoolean()) ThrowTypeError(options.Env(), std::string(key) + ": expected a boolean, got " + Describe(v));
  return v.As<Napi::Boolean>().Value();
}

bool BoolOption(const Napi::Object& options, const char* key, bool fallback) {
  return options.Get(key).IsUndefined() ? fallback : BoolOption(options, key);
}

std::string StringOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (!v.IsString()) ThrowTypeError(options.Env(), std::string(key) + ": expected a string, got " + Describe(v));
  return v.As<Napi::String>().Utf8Value();
}

c10::optional<std::string> OptionalStringOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined() || v.IsNull()) return c10::nullopt;
  return StringOption(options, key);
}

std::vector<double> NumberListOption(const Napi::Object& options, const char* key) {
  Napi::Array a = ArrayField(options, key, "numbers");
  std::vector<double> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) ThrowTypeError(options.Env(), Element(key, k) + ": expected a number, got " + Describe(e));
    out[k] = e.As<Napi::Number>().DoubleValue();
  }
  return out;
}

c10::optional<std::vector<int64_t>> OptionalIntListOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined() || v.IsNull()) return c10::nullopt;
  Napi::Array a = ArrayField(options, key, "integers");
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) out[k] = IntValue(options.Env(), a.Get(k), Element(key, k));
  return out;
}

std::vector<int64_t> ShapeOption(const Napi::Object& options, const char* key) {
  Napi::Array a = ArrayField(options, key, "integers");
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || !IsExactInteger(d))
      ThrowTypeError(options.Env(), Element(key, k) + ": expected a non-negative integer, got " + Describe(e));
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

at::Tensor& TensorOption(const Napi::Object& options, const char* key) { return TensorValue(options.Env(), options.Get(key), key); }

at::Tensor OptionalTensorOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined() || v.IsNull()) return at::Tensor();
  return TensorValue(options.Env(), v, key);
}

std::vector<at::Tensor> TensorListOption(const Napi::Object& options, const char* key) {
  return TensorListValue(options.Env(), options.Get(key), key);
}

}  // namespace tl
