// Ops with several results (split, chunk, topk, sort) return them as one JS array of handles.
#pragma once
#include "handle.h"

namespace tl {

inline Napi::Value WrapTensorList(Napi::Env env, std::vector<at::Tensor> tensors) {
  Napi::Array out = Napi::Array::New(env, tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k) out.Set(static_cast<uint32_t>(k), WrapTensor(env, std::move(tensors[k])));
  return out;
}

}  // namespace tl
