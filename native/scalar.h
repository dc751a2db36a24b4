// A JS number as an ATen Scalar operand.
#pragma once
#include <cmath>
#include "torch_headers.h"

namespace tl {

// Integral values become integer Scalars so that, as with a Python int in PyTorch,
// `intTensor.add(1)` stays integer instead of promoting to float32.
inline at::Scalar NumberScalar(const Napi::Value& v) {
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) <= 9007199254740991.0 && !(d == 0 && std::signbit(d))) {
    return at::Scalar(static_cast<int64_t>(d));
  }
  return at::Scalar(d);
}

}  // namespace tl
