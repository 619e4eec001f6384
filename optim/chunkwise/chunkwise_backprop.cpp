#include "optim/chunkwise/chunkwise_backprop.h"

#include "parallel/attention/prefix_attention.h"
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

  // Phase 1: attention over the cached prefix, then the chunk's K/V join the cache as leaves
  // (requiring a gradient only where the reverse sweep will read it).
  AttendFn recording(const Chunk& chunk, bool needs_grad) {
    return [this, &chunk, needs_grad](int64_t layer, const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, double scale) {
      auto& mine = blocks_[layer];
      auto out = prefix_attention(q, k, v, chunk.tokens.positions, chunk.tokens.doc_ids, mine, mine.size(), scale);
      mine.push_back({k.contiguous().detach().requires_grad_(needs_grad), v.contiguous().detach().requires_grad_(needs_grad),
                      chunk.tokens.positions, chunk.tokens.doc_ids});
      return out;
    };
  }

  // Phase 2: the same attention with a graph, over the leaves of the chunks before this one; the
  // chunk's fresh K/V are collected as roots of its backward.
  AttendFn rebuilding(const Chunk& chunk, std::vector<torch::Tensor>& fresh_k, std::vector<torch::Tensor>& fresh_v) {
    return [this, &chunk, &fresh_k, &fresh_v](int64_t layer, const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& v, double scale) {
      fresh_k[layer] = k;
      fresh_v[layer] = v;
      return prefix_attention(q, k, v, chunk.tokens.positions, chunk.tokens.doc_ids, blocks_[layer],
                              static_cast<size_t>(chunk.index), scale);
    };
  }

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

// Rebuilds `chunk` and backpropagates its weighted loss and the K/V gradients of later chunks.
double backward_chunk(Llama& model, KvCheckpoints& cache, const Chunk& chunk, const ChunkSelection& selection,
                      double loss_denominator) {
  const int64_t layers = model->config().n_layers;
  std::vector<torch::Tensor> fresh_k(layers), fresh_v(layers);
  const AttendFn attend = cache.rebuilding(chunk, fresh_k, fresh_v);
  const auto& t = chunk.tokens;
  const auto loss = summed_loss(model->forward(t.tokens, t.positions, t.doc_ids, &attend), t.labels);
  std::vector<torch::Tensor> roots{loss}, seeds{torch::full_like(loss, selection.loss_scale / loss_denominator)};
  for (int64_t l = 0; l < layers; ++l) {
    const KeyBlock* leaf = cache.block(l, chunk.index);
    if (!leaf) continue;
    for (const auto& [root, grad] : {std::pair{fresh_k[l], leaf->k.grad()}, std::pair{fresh_v[l], leaf->v.grad()}}) {
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
  KvCheckpoints cache(model->config().n_layers);
  {
    // The last chunk's K/V are nobody's prefix: it runs here only to report its loss if unvisited.
    torch::NoGradGuard no_grad;
    const int64_t last = result.chunks - 1;
    for (int64_t j = 0; j < (selection.keep[last] ? last : result.chunks); ++j) {
      const Chunk chunk = slice(sequence, j, chunk_size);
      const AttendFn attend = cache.recording(chunk, selection.keep[j]);
      const auto h = model->hidden(chunk.tokens.tokens, chunk.tokens.positions, chunk.tokens.doc_ids, &attend);
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

}  // namespace loom
