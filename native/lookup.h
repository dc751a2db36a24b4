// Token-id validation shared by the plain and the LoRA embedding lookups.
#pragma once
#include "torch_headers.h"

namespace tl {

/** Throws a JS TypeError/RangeError unless `ids` are integer ids in [0, rows). */
void CheckTokenIds(Napi::Env env, const at::Tensor& ids, int64_t rows);

}  // namespace tl
