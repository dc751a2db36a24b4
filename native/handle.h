// Tensor handles: a torch::Tensor boxed in a N-API External. The TypeScript Tensor class
// holds the handle; creating an External is far cheaper than constructing an ObjectWrap
// per result, which is what keeps small ops competitive with PyTorch from Python.
#pragma once
#include "torch_headers.h"

namespace tl {

/** Wraps `t` (moved) in a new handle; its native bytes are reported to V8. */
Napi::Value WrapTensor(Napi::Env env, at::Tensor t);

/** The tensor behind argument `i`; throws a JS Error when it is not a handle or was disposed. */
at::Tensor& TensorArg(const Napi::CallbackInfo& info, size_t i, const char* name);

/** The tensor behind any JS value (an element of an array argument, say); `name` labels errors. */
at::Tensor& TensorValue(Napi::Env env, const Napi::Value& value, const std::string& name);

/** Any JS value as an array of handles (a field, or an element of a nested array); `name` labels errors. */
std::vector<at::Tensor> TensorListValue(Napi::Env env, const Napi::Value& value, const std::string& name);

/** Like TensorArg, but null/undefined gives an undefined tensor. */
at::Tensor OptionalTensorArg(const Napi::CallbackInfo& info, size_t i, const char* name);

/** Array of handles. */
std::vector<at::Tensor> TensorListArg(const Napi::CallbackInfo& info, size_t i, const char* name);

/**
 * Records that native code wrote these tensors' memory itself (a file read, a collective), as
 * libtorch's in-place ops do: their version counter moves on, so autograd refuses a graph that
 * saved the old values and the caches keyed by version (lib/models/head-columns.ts) rebuild.
 */
inline void MarkWritten(const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& t : tensors) torch::autograd::impl::bump_version(t);
}

/** Frees the tensor's memory now; later use of the handle is a clear error. */
void DisposeHandle(const Napi::CallbackInfo& info, size_t i);

/** Handles created and not yet disposed or garbage-collected, process-wide, and their bytes. */
struct LiveTensorStats {
  int64_t tensors;
  int64_t bytes;
};
LiveTensorStats LiveTensors();
/** Stops (true) or resumes (false) reporting new handles' bytes to V8 on this thread; returns the previous setting. */
bool PauseExternalReports(bool paused);

/** Reports the bytes of a handle created while reports were paused (a no-op when already reported). */
void ReportHandle(const Napi::CallbackInfo& info, size_t i);

/** dtype names as lib/dtype.ts spells them (it checks them and words the errors; a name that
 * cannot be mapped is refused plainly here). */
at::ScalarType ParseDtype(Napi::Env env, const std::string& name, const char* argName);
const char* DtypeName(at::ScalarType type);

/** "cpu", "cuda", "cuda:N" (checked and worded by lib/dtype.ts); a CUDA device this machine
 * does not have is refused plainly. */
at::Device ParseDevice(Napi::Env env, const std::string& name, const char* argName);
std::string DeviceName(const at::Device& device);

}  // namespace tl
