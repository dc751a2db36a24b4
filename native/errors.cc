#include "torch_headers.h"
#include "errors.h"

namespace tl {

std::string CleanTorchMessage(const std::string& what) {
  std::string msg = what;
  // c10 appends "Exception raised from <fn> at <file>:<line> ..." and a backtrace.
  for (const char* marker : {"\nException raised from", "Exception raised from "}) {
    size_t at = msg.find(marker);
    if (at != std::string::npos) msg.erase(at);
  }
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (msg.empty()) return "libtorch error";
  // CPU builds of libtorch lack many float16 kernels (matmul, exp, tanh, softmax, ...); the
  // bare kernel name does not tell the user what to do about it.
  if (msg.find("not implemented for 'Half'") != std::string::npos) {
    msg +=
        " (this libtorch has no float16 kernel for the operation on this device: convert with "
        "to(\"float32\") or use bfloat16)";
  }
  return msg;
}

void ThrowError(Napi::Env env, const std::string& message) { throw Napi::Error::New(env, message); }
void ThrowTypeError(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }
void ThrowRangeError(Napi::Env env, const std::string& message) { throw Napi::RangeError::New(env, message); }

std::string Describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) {
    std::ostringstream s;
    s << v.As<Napi::Number>().DoubleValue();
    return s.str();
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsString()) return "the string \"" + v.As<Napi::String>().Utf8Value() + "\"";
  if (v.IsExternal()) return "a native handle";
  if (v.IsArray()) return "an array";
  if (v.IsTypedArray()) return "a typed array";
  if (v.IsFunction()) return "a function";
  return "an object";
}

static std::string Expected(const char* name, const char* what, const Napi::Value& v) {
  return std::string(name) + ": expected " + what + ", got " + Describe(v);
}

double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) ThrowTypeError(info.Env(), Expected(name, "a number", v));
  return v.As<Napi::Number>().DoubleValue();
}

int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double d = NumberArg(info, i, name);
  if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) {
    ThrowRangeError(info.Env(), Expected(name, "an integer", info[i]));
  }
  return static_cast<int64_t>(d);
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) ThrowTypeError(info.Env(), Expected(name, "a boolean", v));
  return v.As<Napi::Boolean>().Value();
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsString()) ThrowTypeError(info.Env(), Expected(name, "a string", v));
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> IntListArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsArray()) ThrowTypeError(info.Env(), Expected(name, "an array of integers", v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    // Beyond 2^53 a double is no longer an exact integer, and casting one past 2^63 is undefined.
    if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) {
      ThrowTypeError(info.Env(), std::string(name) + "[" + std::to_string(k) + "]: expected an integer, got " + Describe(e));
    }
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

}  // namespace tl
