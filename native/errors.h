// Argument checks and the exception boundary: every entry point turns c10::Error and
// std::exception into a JS Error, so bad input can never abort the Node process.
//
// Entry points return that Error instead of throwing it; lib/binding.ts throws it. A JS
// exception thrown from native code is rethrown by Node-API after the call returns, and on
// Node 20 a garbage collection during that rethrow runs GC-time finalizers (ours free tensors)
// while the exception is still recorded, which Node takes for the finalizer's own uncaught
// exception: it then calls into JS inside the collector and V8 aborts the process.
#pragma once
#include <string>
#include <c10/util/Exception.h>
#include <napi.h>

namespace tl {

/** libtorch's message without the C++ backtrace and source locations it appends. */
std::string CleanTorchMessage(const std::string& what);

/** Throws a JS Error (as a C++ exception, which Guard turns into the entry point's result). */
[[noreturn]] void ThrowError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);

/** A short description of a JS value for error messages ("a string", "3.5", "undefined"). */
std::string Describe(const Napi::Value& value);

double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* name);
int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::vector<int64_t> IntListArg(const Napi::CallbackInfo& info, size_t i, const char* name);

/** Runs `body`; any C++ exception becomes a JS Error object, returned (see the top of this file). */
template <typename Body>
Napi::Value Guard(const Napi::CallbackInfo& info, Body&& body) {
  Napi::Env env = info.Env();
  try {
    return body();
  } catch (const Napi::Error& e) {
    return e.Value();
  } catch (const c10::Error& e) {
    return Napi::Error::New(env, CleanTorchMessage(e.what())).Value();
  } catch (const std::exception& e) {
    return Napi::Error::New(env, CleanTorchMessage(e.what())).Value();
  } catch (...) {
    return Napi::Error::New(env, "torch-lora: unknown native error").Value();
  }
}

/** An entry point wrapped in Guard: use as `exports.Set(name, Napi::Function::New(env, Entry<&Fn>))`. */
template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
Napi::Value Entry(const Napi::CallbackInfo& info) {
  return Guard(info, [&] { return Fn(info); });
}

/** Registers one guarded entry point on `exports`. */
#define TL_EXPORT(exports, name, fn) (exports).Set(name, Napi::Function::New((exports).Env(), ::tl::Entry<&fn>, name))

}  // namespace tl
