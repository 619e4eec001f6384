#include "runtime/train/chunkwise/chunkwise_backprop.h"

#include <memory>

#include "kernels/attention/prefix_attention.h"
#include "parallel/comm/mappings.h"
#include "parallel/sequence/sequence_shard.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

struct Chunk {
  SequenceShard rows;  // this rank's rows of the chunk: all of them, or its shard over sp
  int64_t index;
};

Chunk slice(const PackedTensors& s, int64_t index, int64_t chunk_size, const Communicator* sp) {
  const int64_t start = index * chunk_size;
  const int64_t n = std::min(chunk_size, s.tokens.size(0) - start);
  const PackedTensors whole{s.tokens.narrow(0, start, n), s.positions.narrow(0, start, n), s.doc_ids.narrow(0, start, n),
                            s.labels.narrow(0, start, n), 0};
  return {sp ? shard_sequence(whole, sp->size(), sp->rank()) : whole_sequence(whole), index};
}

int64_t real_tokens(const Chunk& c) { return (c.rows.tokens.doc_ids >= 0).sum().item<int64_t>(); }

// The chunk's keys and values as the cache keeps them: this rank's own, or under sequence
// parallelism the whole chunk's, all-gathered over sp in the layout's rank order (differentiable:
// the backward sums each row's gradient over the ranks and returns it to the row's owner).
KeyBlock chunk_keys(const torch::Tensor& k, const torch::Tensor& v, const SequenceShard& rows, Communicator* sp) {
  const auto& t = rows.tokens;
  if (!sp) return {k, v, t.positions, t.doc_ids};
  const auto kv = torch::stack({k, v}).permute({2, 0, 1, 3}).contiguous();               // [n, 2, Hkv, d]
  const auto all = differentiable::all_gather(kv, *sp).permute({1, 2, 0, 3});            // [2, Hkv, N n, d]
  return {all[0].contiguous(), all[1].contiguous(), rows.layout->pos.reshape(-1), rows.layout->doc.reshape(-1)};
}

// Attention of this rank's rows of a chunk over the prefix blocks[0, count) and the chunk's keys:
// its own rows' causally, and under sequence parallelism the other ranks' rows of the chunk (its
// own masked out of the gathered block: document -1 sees nothing).
torch::Tensor attend_chunk(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const KeyBlock& keys,
                           const SequenceShard& rows, const std::vector<KeyBlock>& blocks, size_t count, double scale) {
  const auto& t = rows.tokens;
  if (!rows.sharded()) return prefix_attention(q, k, v, t.positions, t.doc_ids, blocks, count, scale);
  std::vector<KeyBlock> prefix(blocks.begin(), blocks.begin() + static_cast<std::ptrdiff_t>(count));
  const int64_t n = rows.layout->shard_length();
  torch::Tensor others = keys.doc.clone();
  others.narrow(0, rows.rank * n, n).fill_(-1);
  prefix.push_back({keys.k, keys.v, keys.pos, others});
  return prefix_attention(q, k, v, t.positions, t.doc_ids, prefix, prefix.size(), scale);
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
  RecordingAttention(std::vector<KeyBlock>& blocks, bool needs_grad, Communicator* sp)
      : blocks_(blocks), needs_grad_(needs_grad), sp_(sp) {}
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                       const SequenceShard& chunk) override {
    const KeyBlock keys = chunk_keys(k, v, chunk, sp_);
    auto out = attend_chunk(q, k, v, keys, chunk, blocks_, blocks_.size(), scale);
    blocks_.push_back({keys.k.contiguous().detach().requires_grad_(needs_grad_),
                       keys.v.contiguous().detach().requires_grad_(needs_grad_), keys.pos, keys.doc});
    return out;
  }

 private:
  std::vector<KeyBlock>& blocks_;
  bool needs_grad_;
  Communicator* sp_;
};

// Phase 2, one layer: the same attention with a graph, over the leaves of the chunks before this
// one; the chunk's fresh K/V (as the cache holds them) are kept as roots of its backward.
class RebuildingAttention : public CoreAttention {
 public:
  RebuildingAttention(const std::vector<KeyBlock>& blocks, int64_t index, Communicator* sp)
      : blocks_(blocks), index_(index), sp_(sp) {}
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                       const SequenceShard& chunk) override {
    const KeyBlock keys = chunk_keys(k, v, chunk, sp_);
    fresh_k = keys.k;
    fresh_v = keys.v;
    return attend_chunk(q, k, v, keys, chunk, blocks_, static_cast<size_t>(index_), scale);
  }
  torch::Tensor fresh_k, fresh_v;

 private:
  const std::vector<KeyBlock>& blocks_;
  int64_t index_;
  Communicator* sp_;
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
torch::Tensor record_chunk(Llama& model, KvCheckpoints& cache, const Chunk& chunk, bool needs_grad, Communicator* sp) {
  std::vector<std::shared_ptr<CoreAttention>> per_layer;
  for (int64_t l = 0; l < model->num_layers(); ++l)
    per_layer.push_back(std::make_shared<RecordingAttention>(cache.layer(l), needs_grad, sp));
  const InstalledAttention installed(model, per_layer);
  return model->hidden(chunk.rows);
}

// Rebuilds `chunk` and backpropagates its weighted loss and the K/V gradients of later chunks.
double backward_chunk(Llama& model, KvCheckpoints& cache, const Chunk& chunk, const ChunkSelection& selection,
                      double loss_denominator, Communicator* sp, const std::function<void()>& before_backward) {
  const int64_t layers = model->num_layers();
  std::vector<std::shared_ptr<RebuildingAttention>> rebuilt;
  for (int64_t l = 0; l < layers; ++l)
    rebuilt.push_back(std::make_shared<RebuildingAttention>(cache.layer(l), chunk.index, sp));
  torch::Tensor loss;
  {
    const InstalledAttention installed(model, {rebuilt.begin(), rebuilt.end()});
    loss = model->loss(chunk.rows);  // vocabulary-parallel under tensor parallelism
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
  if (before_backward) before_backward();
  torch::autograd::backward(roots, seeds);
  return loss.item<double>();
}

}  // namespace

int64_t chunk_count(int64_t length, int64_t chunk_size) { return (length + chunk_size - 1) / chunk_size; }

ChunkwiseResult chunkwise_backward(Llama& model, const PackedTensors& sequence, int64_t chunk_size,
                                   const ChunkSelection& selection, double loss_denominator, Communicator* sp,
                                   const std::function<void()>& before_backward) {
  if (sp && sp->size() == 1) sp = nullptr;
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
      const Chunk chunk = slice(sequence, j, chunk_size, sp);
      result.tokens += real_tokens(chunk);
      const auto h = record_chunk(model, cache, chunk, selection.keep[j], sp);
      if (!selection.keep[j]) result.loss += summed_loss(model->logits(h), chunk.rows.tokens.labels).item<double>();
    }
  }
  for (int64_t j = result.chunks; j-- > 0;) {
    if (!selection.keep[j]) continue;
    const Chunk chunk = slice(sequence, j, chunk_size, sp);
    if (j == result.chunks - 1) result.tokens += real_tokens(chunk);  // the first pass left it out
    result.loss += backward_chunk(model, cache, chunk, selection, loss_denominator, sp, before_backward);
    ++result.visited;
    cache.drop_from(j);
  }
  return result;
}

ChunkSelection ChunkwiseBackprop::selection(const MicroBatch& batch) const {
  const int64_t chunks = chunk_count(batch.tokens.tokens.size(0), train_.chunk_size);
  return train_.strategy == "seco" ? all_chunks(chunks) : sample_chunks(train_.spaco, chunks, seed_, batch.index);
}

Backpropagated ChunkwiseBackprop::run(const MicroBatch& batch, double denominator) {
  const auto arm_every_backward = [this] {
    for (auto* r : reducers_)
      if (r->reduces_every_backward()) r->arm();
  };
  Communicator* group = batch.ring ? batch.ring->forward : sp_;
  const ChunkwiseResult r = chunkwise_backward(model_, on_device(batch.tokens, model_->device()), train_.chunk_size,
                                               selection(batch), denominator, group, arm_every_backward);
  Backpropagated result;
  result.tokens = r.tokens;
  result.flops = model_->training_flops(batch.tokens) / (group ? group->size() : 1);
  result.loss = r.loss;
  if (batch.last)
    for (auto* reducer : reducers_)
      if (!reducer->reduces_every_backward()) reducer->arm();
  return result;
}

}  // namespace loom
