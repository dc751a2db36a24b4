// Shape ops: permute, unsqueeze, squeeze, flatten, expand, stack, split, chunk, slice. Each is
// one ATen call returning a view where ATen does, so autograd and aliasing behave as in PyTorch.
//
// Argument rule (as in every ops_*.cc): an entry point with at most three arguments takes them
// positionally, which keeps small calls cheap; one with more takes the tensor(s) and ONE named
// options object (slice). lib/tensor.ts checks meaning and words the errors; this file checks
// only what keeps memory safe.
#include "handle.h"
#include "errors.h"
#include "options.h"
#include "wrap_list.h"

namespace tl {
namespace {

// permute(t, dims)
Napi::Value Permute(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").permute(IntListArg(info, 1, "dims")));
}

// unsqueeze(t, dim)
Napi::Value Unsqueeze(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").unsqueeze(IntArg(info, 1, "dim")));
}

// squeeze(t, dim | null): every size-1 dimension, or only `dim` (left alone unless its size is 1).
Napi::Value Squeeze(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  if (info[1].IsNull() || info[1].IsUndefined()) return WrapTensor(info.Env(), t.squeeze());
  return WrapTensor(info.Env(), t.squeeze(IntArg(info, 1, "dim")));
}

// flatten(t, startDim, endDim)
Napi::Value Flatten(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").flatten(IntArg(info, 1, "startDim"), IntArg(info, 2, "endDim")));
}

// expand(t, shape): -1 keeps a dimension's size.
Napi::Value Expand(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").expand(IntListArg(info, 1, "shape")));
}

// stack(tensors, dim)
Napi::Value Stack(const Napi::CallbackInfo& info) {
  std::vector<at::Tensor> parts = TensorListArg(info, 0, "tensors");
  return WrapTensor(info.Env(), at::stack(parts, IntArg(info, 1, "dim")));
}

// split(t, size | sizes, dim): pieces of `size` (the last may be smaller), or of the given sizes.
Napi::Value Split(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  int64_t dim = IntArg(info, 2, "dim");
  if (info[1].IsArray()) return WrapTensorList(info.Env(), t.split_with_sizes(IntListArg(info, 1, "splitSizeOrSections"), dim));
  // ATen refuses a negative size, and 0 for a non-empty dim; lib/tensor.ts words the error.
  int64_t size = IntArg(info, 1, "splitSizeOrSections");
  return WrapTensorList(info.Env(), t.split(size, dim));
}

// chunk(t, chunks, dim)
Napi::Value Chunk(const Napi::CallbackInfo& info) {
  int64_t chunks = IntArg(info, 1, "chunks");  // ATen refuses chunks <= 0
  return WrapTensorList(info.Env(), TensorArg(info, 0, "tensor").chunk(chunks, IntArg(info, 2, "dim")));
}

// slice(t, { dim, start, end, step }): start/end may be null (the ends of the dimension) and
// are clamped like Python slices; step must be positive, as in PyTorch (ATen refuses others).
Napi::Value Slice(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Object o = OptionsArg(info, 1);
  int64_t step = IntOption(o, "step");
  return WrapTensor(info.Env(), t.slice(IntOption(o, "dim"), OptionalIntOption(o, "start"), OptionalIntOption(o, "end"), step));
}

}  // namespace

void RegisterShapeOps(Napi::Object exports) {
  TL_EXPORT(exports, "permute", Permute);
  TL_EXPORT(exports, "unsqueeze", Unsqueeze);
  TL_EXPORT(exports, "squeeze", Squeeze);
  TL_EXPORT(exports, "flatten", Flatten);
  TL_EXPORT(exports, "expand", Expand);
  TL_EXPORT(exports, "stack", Stack);
  TL_EXPORT(exports, "split", Split);
  TL_EXPORT(exports, "chunk", Chunk);
  TL_EXPORT(exports, "slice", Slice);
}

}  // namespace tl
