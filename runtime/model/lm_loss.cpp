#include "runtime/model/lm_loss.h"

#include "runtime/core/precision.h"

namespace loom {

torch::Tensor summed_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto wide = accumulation_dtype(logits.scalar_type());
  return torch::nn::functional::cross_entropy(
      logits.to(wide), labels,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1).reduction(torch::kSum));
}

}  // namespace loom
