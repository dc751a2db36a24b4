#include "options.h"
#include "errors.h"
#include "handle.h"

namespace tl {
namespace {

bool IsExactInteger(double d) {
  // Beyond 2^53 a double is no longer an exact integer, and casting one past 2^63 is undefined.
  return std::isfinite(d) && std::floor(d) == d && std::fabs(d) <= 9007199254740991.0;
}

int64_t IntValue(Napi::Env env, const Napi::Value& v, const char* key) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!IsExactInteger(d)) ThrowTypeError(env, std::string(key) + ": expected an integer, got " + Describe(v));
  return static_cast<int64_t>(d);
}

}  // namespace

Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsObject() || v.IsArray() || v.IsExternal()) {
    ThrowTypeError(info.Env(), std::string(name) + ": expected an options object, got " + Describe(v));
  }
  return v.As<Napi::Object>();
}

int64_t IntOption(const Napi::Object& options, const char* key) { return IntValue(options.Env(), options.Get(key), key); }

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

bool BoolOption(const Napi::Object& options, const char* key, bool fallback) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) ThrowTypeError(options.Env(), std::string(key) + ": expected a boolean, got " + Describe(v));
  return v.As<Napi::Boolean>().Value();
}

c10::optional<std::vector<int64_t>> OptionalIntListOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined() || v.IsNull()) return c10::nullopt;
  if (!v.IsArray()) ThrowTypeError(options.Env(), std::string(key) + ": expected an array of integers, got " + Describe(v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    std::string label = std::string(key) + "[" + std::to_string(k) + "]";
    out[k] = IntValue(options.Env(), a.Get(k), label.c_str());
  }
  return out;
}

at::Tensor& TensorOption(const Napi::Object& options, const char* key) { return TensorValue(options.Env(), options.Get(key), key); }

std::string StringOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (!v.IsString()) ThrowTypeError(options.Env(), std::string(key) + ": expected a string, got " + Describe(v));
  return v.As<Napi::String>().Utf8Value();
}

std::vector<at::Tensor> TensorListOption(const Napi::Object& options, const char* key) {
  Napi::Value v = options.Get(key);
  if (!v.IsArray()) ThrowTypeError(options.Env(), std::string(key) + ": expected an array of Tensors, got " + Describe(v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    out.push_back(TensorValue(options.Env(), a.Get(k), std::string(key) + "[" + std::to_string(k) + "]"));
  }
  return out;
}

}  // namespace tl
