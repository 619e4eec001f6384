// The dtype Loom accumulates in (attention partials, norms, losses, fast-weight state): float64
// stays float64, for the exactness tests; float32, bfloat16 and float16 accumulate in float32.
#pragma once
#include <torch/torch.h>

namespace loom {

inline torch::ScalarType accumulation_dtype(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

}  // namespace loom
