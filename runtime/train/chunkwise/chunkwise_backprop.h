// SeCO / SpaCO: backprop along the sequence one chunk at a time (Li et al., "Training Long-Context
// LLMs Efficiently via Chunk-wise Optimization", ACL Findings 2025, Algorithm 1; docs/chunkwise-backprop.md).
//
// The keys and values of a chunk are all that later chunks read from it, so they are gradient
// checkpoints along the sequence:
//   1. Without a graph, run the chunks in order, each attending to the cached K/V of the chunks
//      before it, and keep every layer's K (after RoPE) and V of each chunk as leaf tensors (the LM
//      head is skipped, except to report the loss of chunks the sweep will not visit).
//   2. Walk the chunks in reverse. Rebuild one chunk's graph over the cached prefix and run one
//      backward from several roots: the chunk's loss, and its fresh K/V seeded with the gradient
//      that later chunks left in its leaves. This adds the chunk's share to the parameters' .grad
//      and pushes its share into the leaves of earlier chunks. Then the chunk's graph, cache and
//      leaf gradients are dropped.
// Only one chunk's activations are alive at a time; the cost is one extra forward. The gradient
// is the full-sequence gradient (SeCO) or the estimate that chunk_selection.h describes (SpaCO).
//
// Over a sequence-parallel group, every chunk is cut among the sp ranks (zigzag, sequence_layout.h)
// and each rank computes its rows of it. Every layer all-gathers the chunk's K/V over the group, so
// each rank caches the whole prefix's K/V and its queries attend to it without further traffic: the
// all-gather form of context parallelism (Llama 3, Dubey et al. 2024, section 3.3.2), whose cache of
// 2 x kv_dim values per token and layer is small beside the activations it saves. The all-gather's
// backward, a reduce-scatter, sums each cached row's gradient over the ranks' queries and returns it
// to the row's owner; so the cached leaves hold this rank's share, and each chunk's rebuild seeds the
// gathered K/V with it. Every rank of sp runs the same chunks in the same order.
#pragma once
#include <torch/torch.h>

#include <functional>

#include "parallel/data/gradient_reducer.h"
#include "runtime/core/packed_tensors.h"
#include "runtime/model/llama.h"
#include "runtime/model/lm_loss.h"
#include "runtime/train/backprop.h"
#include "runtime/train/chunkwise/chunk_selection.h"

namespace loom {

struct ChunkwiseResult {
  double loss = 0;       // summed loss of the whole sequence (every chunk, visited or not), unscaled
  int64_t tokens = 0;    // real (non-padding) tokens this rank computed
  int64_t chunks = 0;
  int64_t visited = 0;   // chunks the reverse sweep rebuilt
};

// The number of chunks of `chunk_size` tokens (the last may be shorter) in `length` tokens.
int64_t chunk_count(int64_t length, int64_t chunk_size);

// Adds to the parameters' .grad the gradient of loss / loss_denominator over one packed sequence,
// chunk by chunk, visiting the chunks `selection` keeps (the same on every rank of sp). With `sp`
// (more than one rank; it must outlive the call) this rank computes its shard of each chunk, and
// the gradient and loss are its share: summed over sp they are the single-process ones.
// `before_backward` runs before each visited chunk's backward (ZeRO stage 2 arms its reducer there).
ChunkwiseResult chunkwise_backward(Llama& model, const PackedTensors& sequence, int64_t chunk_size,
                                   const ChunkSelection& selection, double loss_denominator, Communicator* sp = nullptr,
                                   const std::function<void()>& before_backward = {});

// train.strategy seco or spaco as the trainer's Backprop. The gradient is complete only after the
// sweep (each chunk runs a backward of its own), so a reducer is armed after it and reduces
// everything when the step finishes it; one that reduces every backward (ZeRO stage 2) is armed
// before each chunk's, so no whole gradient is kept, at the price of a reduction per chunk.
class ChunkwiseBackprop : public Backprop {
 public:
  // sp: the sequence-parallel group (null or one rank: every chunk whole on this rank). A micro-batch
  // that names a ring (a placement's split document) is cut over the ring instead.
  ChunkwiseBackprop(Llama& model, const TrainConfig& train, int64_t seed, Communicator* sp,
                    std::vector<GradientReducer*> reducers)
      : model_(model), train_(train), seed_(seed), sp_(sp), reducers_(std::move(reducers)) {}
  Backpropagated run(const MicroBatch& batch, double denominator) override;
  int64_t backwards(const MicroBatch& batch) const override { return selection(batch).kept(); }

 private:
  ChunkSelection selection(const MicroBatch& batch) const;
  Llama& model_;
  TrainConfig train_;
  int64_t seed_;
  Communicator* sp_;
  std::vector<GradientReducer*> reducers_;
};

}  // namespace loom
