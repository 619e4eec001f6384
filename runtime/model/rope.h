// Rotary position embedding, "rotate-half" form (the Hugging Face Llama layout): the head vector is
// split into halves (x1, x2) and frequency i rotates the pair (x1[i], x2[i]) by pos * theta^(-2i/d).
#pragma once
#include <torch/torch.h>

namespace loom {

// x [N, H, d] at positions [N] (int64, global positions from the token layout) -> rotated x.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& positions, double theta);

}  // namespace loom
