#include "runtime/train/packed_tensors.h"

#include "parallel/attention/block_attention.h"

namespace loom {
namespace {

torch::Tensor as_tensor(const std::vector<int64_t>& values) {
  return torch::tensor(values, torch::dtype(torch::kInt64));
}

}  // namespace

PackedTensors to_tensors(const PackedBatch& b) {
  return {as_tensor(b.tokens), as_tensor(b.positions), as_tensor(b.doc_ids), as_tensor(b.labels), b.label_count};
}

PackedTensors shard(const PackedTensors& b, const SequenceLayout& layout, int64_t rank) {
  return {layout.take(b.tokens, 0, rank, 0), layout.take(b.positions, 0, rank, 0), layout.take(b.doc_ids, 0, rank, -1),
          layout.take(b.labels, 0, rank, -1), b.label_count};
}

double training_flops(const Llama& model, const PackedTensors& batch) {
  const auto& c = model->config();
  const auto pairs = static_cast<double>(visible_pairs(AttentionMask::self(batch.positions, batch.doc_ids)));
  const double attention = 4.0 * static_cast<double>(c.head_dim() * c.n_heads) * pairs * static_cast<double>(c.n_layers);
  const auto tokens = static_cast<double>((batch.doc_ids >= 0).sum().item<int64_t>());
  return 3.0 * (model->dense_flops_per_token() * tokens + attention);
}

}  // namespace loom
