#include "lookup.h"
#include "errors.h"
#include "handle.h"

namespace tl {

void CheckTokenIds(Napi::Env env, const at::Tensor& ids, int64_t rows) {
  if (ids.scalar_type() != at::kLong && ids.scalar_type() != at::kInt) {
    ThrowTypeError(env, std::string("ids: expected token ids of dtype int64 or int32, got ") + DtypeName(ids.scalar_type()));
  }
  if (ids.numel() == 0) return;
  // An out-of-range id would be an index error deep in ATen (or a device assert on CUDA):
  // name the offending id here instead.
  auto [lo, hi] = at::aminmax(ids);
  int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
  if (min < 0 || max >= rows) {
    int64_t bad = min < 0 ? min : max;
    ThrowRangeError(env, "ids: token id " + std::to_string(bad) + " is out of range for an embedding of " + std::to_string(rows) +
                             " rows (valid ids are 0.." + std::to_string(rows - 1) + ")");
  }
}

}  // namespace tl
