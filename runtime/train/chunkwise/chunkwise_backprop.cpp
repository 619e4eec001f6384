#include "runtime/train/chunkwise/chunkwise_backprop.h"

#include <memory>

#include "kernels/attention/prefix_attention.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

struct Chunk {
  PackedTensors tokens;  // its slice of the sequence
  int64_t index;
};

Chunk slice(const PackedTensors& s, int64_t index, int64_t chunk_size) {
  const int64_t start = index * chunk_size;
  const int64_t n = std::min(chunk_size, s.tokens.size(0) - start);
  return {{s.tokens.narrow(0, start, n), s.positions.narrow(0, start, n), s.doc_ids.narrow(0, start, n),
           s.labels.narrow(0, start, n), 0},
          index};
}

// The K/V checkpoints: per layer, one KeyBlock per chunk processed so far.
class KvCheckpoints {
 public:
  explicit KvCheckpoints(int64_t layers) : blocks_(layers) {}

  std::vector<KeyBlock>& layer(int64_t l) { return blocks_[l]; }

  // The leaves of chunk `index` in `layer`, whose .grad holds what later chunks sent back (if
  // anything); null for a chunk the first pass did not cache.
  const KeyBlock* block(int64_t layer, int64_t index) const {
    const auto& mine = blocks_[layer];
    return index < static_cast<int64_t>(mine.size()) ? &mine[index] : nullptr;
  }

  // Chunks from `index` on are no longer read by anything: free their K/V and gradients.
  void drop_from(int64_t index) {
    for (auto& layer : blocks_) layer.resize(std::min<size_t>(layer.size(), index));
  }

 private:
  std::vector<std::vector<KeyBlock>> blocks_;
};

// Phase 1, one layer: attention over the cached prefix, then the chunk's K/V join the cache as
// leaves (requiring a gradient only where the reverse sweep will read them).
class RecordingAttention : public CoreAttention {
 public:
  RecordingAttention(std::vector<KeyBlock>& blocks, bool needs_grad) : blocks_(blocks), needs_grad_(needs_grad) {}
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                       const SequenceShard& chunk) override {
    const auto& t = chunk.tokens;
    auto out = prefix_attention(q, k, v, t.positions, t.doc_ids, blocks_, blocks_.size(), scale);
    blocks_.push_back({k.contiguous().detach().requires_grad_(needs_grad_), v.contiguous().detach().requires_grad_(needs_grad_),
                       t.positions, t.doc_ids});
    return out;
  }

 private:
  std::vector<KeyBlock>& blocks_;
  bool needs_grad_;
};

// Phase 2, one layer: the same attention with a graph, over the leaves of the chunks before this
// one; the chunk's fresh K/V are kept as roots of its backward.
class RebuildingAttention : public CoreAttention {
 public:
  RebuildingAttention(const std::vector<KeyBlock>& blocks, int64_t index) : blocks_(blocks), index_(index) {}
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                       const SequenceShard& chunk) override {
    fresh_k = k;
    fresh_v = v;
    const auto& t = chunk.tokens;
    return prefix_attention(q, k, v, t.positions, t.doc_ids, blocks_, static_cast<size_t>(index_), scale);
  }
  torch::Tensor fresh_k, fresh_v;

 private:
  const std::vector<KeyBlock>& blocks_;
  int64_t index_;
};

// Installs one core attention per layer for the life of this object, then puts back what was there.
class InstalledAttention {
 public:
  InstalledAttention(Llama& model, std::vector<std::shared_ptr<CoreAttention>> per_layer) : model_(model) {
    for (int64_t l = 0; l < model->num_layers(); ++l) {
      saved_.push_back(model->layer(l).core_attention());
      model->layer(l).core_attention() = per_layer[l];
    }
  }
  ~InstalledAttention() {
    for (int64_t l = 0; l < model_->num_layers(); ++l) model_->layer(l).core_attention() = saved_[l];
  }
  InstalledAttention(const InstalledAttention&) = delete;
  InstalledAttention& operator=(const InstalledAttention&) = delete;

 private:
  Llama& model_;
  std::vector<std::shared_ptr<CoreAttention>> saved_;
};

// Phase 1 for one chunk: runs it over the cache and caches its K/V; returns its final hidden states.
torch::Tensor record_chunk(Llama& model, KvCheckpoints& cache, const Chunk& chunk, bool needs_grad) {
  std::vector<std::shared_ptr<CoreAttention>> per_layer;
  for (int64_t l = 0; l < model->num_layers(); ++l)
    per_layer.push_back(std::make_shared<RecordingAttention>(cache.layer(l), needs_grad));
  const InstalledAttention installed(model, per_layer);
  return model->hidden(whole_sequence(chunk.tokens));
}

// Rebuilds `chunk` and backpropagates its weighted loss and the K/V gradients of later chunks.
double backward_chunk(Llama& model, KvCheckpoints& cache, const Chunk& chunk, const ChunkSelection& selection,
                      double loss_denominator) {
  const int64_t layers = model->num_layers();
  std::vector<std::shared_ptr<RebuildingAttention>> rebuilt;
  for (int64_t l = 0; l < layers; ++l) rebuilt.push_back(std::make_shared<RebuildingAttention>(cache.layer(l), chunk.index));
  torch::Tensor loss;
  {
    const InstalledAttention installed(model, {rebuilt.begin(), rebuilt.end()});
    const auto& t = chunk.tokens;
    loss = summed_loss(model->forward(whole_sequence(t)), t.labels);
  }
  std::vector<torch::Tensor> roots{loss}, seeds{torch::full_like(loss, selection.loss_scale / loss_denominator)};
  for (int64_t l = 0; l < layers; ++l) {
    const KeyBlock* leaf = cache.block(l, chunk.index);
    if (!leaf) continue;
    for (const auto& [root, grad] : {std::pair{rebuilt[l]->fresh_k, leaf->k.grad()}, std::pair{rebuilt[l]->fresh_v, leaf->v.grad()}}) {
      if (!grad.defined()) continue;
      roots.push_back(root);
      seeds.push_back(grad * selection.seed_scale);
    }
  }
  torch::autograd::backward(roots, seeds);
  return loss.item<double>();
}

}  // namespace

int64_t chunk_count(int64_t length, int64_t chunk_size) { return (length + chunk_size - 1) / chunk_size; }

ChunkwiseResult chunkwise_backward(Llama& model, const PackedTensors& sequence, int64_t chunk_size,
                                   const ChunkSelection& selection, double loss_denominator) {
  ChunkwiseResult result;
  result.chunks = chunk_count(sequence.tokens.size(0), chunk_size);
  check(static_cast<int64_t>(selection.keep.size()) == result.chunks,
        "chunk selection has " + std::to_string(selection.keep.size()) + " entries for " +
            std::to_string(result.chunks) + " chunks");
  check(model->config().lact.every == 0, "chunk-wise backprop does not carry LaCT's fast weights from chunk to chunk; "
                                         "train LaCT models with train.strategy: full");
  KvCheckpoints cache(model->num_layers());
  {
    // The last chunk's K/V are nobody's prefix: it runs here only to report its loss if unvisited.
    torch::NoGradGuard no_grad;
    const int64_t last = result.chunks - 1;
    for (int64_t j = 0; j < (selection.keep[last] ? last : result.chunks); ++j) {
      const Chunk chunk = slice(sequence, j, chunk_size);
      const auto h = record_chunk(model, cache, chunk, selection.keep[j]);
      if (!selection.keep[j]) result.loss += summed_loss(model->logits(h), chunk.tokens.labels).item<double>();
    }
  }
  for (int64_t j = result.chunks; j-- > 0;) {
    if (!selection.keep[j]) continue;
    result.loss += backward_chunk(model, cache, slice(sequence, j, chunk_size), selection, loss_denominator);
    ++result.visited;
    cache.drop_from(j);
  }
  return result;
}

Backpropagated ChunkwiseBackprop::run(const MicroBatch& batch, double denominator) {
  const int64_t chunks = chunk_count(batch.tokens.tokens.size(0), train_.chunk_size);
  const ChunkSelection selection = train_.strategy == "seco" ? all_chunks(chunks)
                                                             : sample_chunks(train_.spaco, chunks, seed_, batch.index);
  Backpropagated result;
  result.tokens = (batch.tokens.doc_ids >= 0).sum().item<int64_t>();
  result.flops = model_->training_flops(batch.tokens);
  result.loss = chunkwise_backward(model_, on_device(batch.tokens, model_->device()), train_.chunk_size, selection, denominator).loss;
  if (batch.last)
    for (auto* r : reducers_) r->arm();
  return result;
}

}  // namespace loom
