// Reading a named options object ({ input, weight, eps, ... }) by field name: entry points with
// more than a few arguments take one such object, so that arguments cannot be passed out of order.
#pragma once
#include "handle.h"
#include "errors.h"

namespace tl {

/** Argument `i` as an object; a TypeError naming `name` otherwise. */
inline Napi::Object OptionsObjectArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsObject() || v.IsArray() || v.IsExternal())
    ThrowTypeError(info.Env(), std::string(name) + ": expected an options object, got " + Describe(v));
  return v.As<Napi::Object>();
}

/** The tensor in field `key`. */
inline at::Tensor& TensorField(const Napi::Object& o, const char* key) { return TensorValue(o.Env(), o.Get(key), key); }

/** The tensor in field `key`, or an undefined tensor when the field is null or absent. */
inline at::Tensor OptionalTensorField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsNull() || v.IsUndefined()) return at::Tensor();
  return TensorValue(o.Env(), v, key);
}

inline double NumberField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) ThrowTypeError(o.Env(), std::string(key) + ": expected a number, got " + Describe(v));
  return v.As<Napi::Number>().DoubleValue();
}

inline bool BoolField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) ThrowTypeError(o.Env(), std::string(key) + ": expected a boolean, got " + Describe(v));
  return v.As<Napi::Boolean>().Value();
}

/** A list of non-negative integers (a shape) in field `key`. */
inline std::vector<int64_t> ShapeField(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) ThrowTypeError(o.Env(), std::string(key) + ": expected an array of integers, got " + Describe(v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 9007199254740991.0) || std::floor(d) != d) {
      ThrowTypeError(o.Env(), std::string(key) + "[" + std::to_string(k) + "]: expected a non-negative integer, got " + Describe(e));
    }
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

}  // namespace tl
