// Applies a parallel plan to a built model from outside it (torchtitan's parallelize_llama): the
// model's code stays the single-process Llama, and this one call decides, layer by layer, how
// attention and LaCT's fast-weight updates reach across ranks and what the layers keep for the
// backward. It installs
//   - on every attention layer: ring (pass-KV) or TokenRing (pass-Q) attention over the sp group, or
//     over the ring a shard names (a placement's, SequenceShard::ring);
//   - on every LaCT layer: halo attention for its sliding window, and the sum of each fast-weight
//     update over the ranks (a differentiable all-reduce on its own communicator);
//   - with tp > 1, tensor parallelism (Megatron's layout): q, k, v, gate and up column-parallel (this
//     rank's heads and MLP columns), o_proj and down_proj row-parallel (their outputs are partial
//     sums), the embedding and LM head split by vocabulary, and every residual boundary a
//     reduce-scatter, add + RMSNorm on this rank's rows and all-gather (parallel/tensor/
//     reduce_add_norm.h): between layers the residual stream is split over the tp ranks by tokens;
//   - with tp > 1 and a token-weave plan, TokenWeave's token splitting (runtime/model/token_weave.h):
//     the layers interleave over two halves of each sequence, one half's boundaries running on the
//     plan's worker while the other half computes;
//   - asked to, activation checkpointing on every layer: selective (the MLP's element-wise product
//     recomputed from the kept projections) or full (each layer keeps only its inputs and
//     recomputes its forward in the backward);
// and leaves the rest as it is (local attention, local residual boundaries). Sequence-parallel
// layers run what is installed whenever their input is a sequence shard; on a whole sequence
// (evaluation) they attend locally. Tensor-parallel layers always need every rank of tp.
#pragma once
#include <string>

#include "parallel/comm/communicator.h"
#include "runtime/model/llama.h"

namespace loom {

struct ParallelPlan {
  std::string sequence_attention = "local";  // local | ring | token_ring (parallel/sequence/attention_choice.h)
  // The sequence-parallel group and two more communicators over the same ranks: TokenRing's
  // returned partials travel on `sp_back`, LaCT's update sums on `sp_sync`, so that no stream of
  // traffic waits behind another. They must outlive every backward of the model.
  Communicator* sp = nullptr;
  Communicator* sp_back = nullptr;
  Communicator* sp_sync = nullptr;
  // train.activation_checkpoint: none; selective (every MLP recomputes its SwiGLU product in the
  // backward); full (every layer keeps only its inputs and recomputes its forward).
  std::string activation_checkpoint = "none";
  Communicator* tp = nullptr;          // the tensor-parallel group (tensor parallelism when larger than 1)
  // Token splitting when its worker is set (and tp > 1); its communicator is one more over the tp
  // ranks, used by the worker alone. Not with full activation checkpointing.
  TokenWeavePlan token_weave;
};

// How tensor parallelism over `ranks` splits the model parameter `name` of `shape` for `rank`.
TensorShard tensor_parallel_shard(const std::string& name, c10::IntArrayRef shape, int64_t ranks, int64_t rank);

// Returns how the parameters were split (empty without tensor parallelism): checkpoints gather
// them by it into whole tensors and split whole tensors by it on loading.
TensorLayout parallelize(Llama& model, const ParallelPlan& plan);

}  // namespace loom
