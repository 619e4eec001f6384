#include "runtime/model/packed_sequence.h"

#include "runtime/core/accumulation_dtype.h"

namespace loom {

torch::Tensor summed_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto wide = accumulation_dtype(logits);
  return torch::nn::functional::cross_entropy(
      logits.to(wide), labels,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1).reduction(torch::kSum));
}

}  // namespace loom
