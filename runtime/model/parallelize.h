// Applies a parallel plan to a built model from outside it (torchtitan's parallelize_llama): the
// model's code stays the single-process Llama, and this one call decides, layer by layer, how
// attention and LaCT's fast-weight updates reach across ranks and what the layers keep for the
// backward. It installs
//   - on every attention layer: ring (pass-KV) or TokenRing (pass-Q) attention over the sp group;
//   - on every LaCT layer: halo attention for its sliding window, and the sum of each fast-weight
//     update over the ranks (a differentiable all-reduce on its own communicator);
//   - asked to, activation checkpointing on every layer (each keeps only its inputs and recomputes
//     its forward in the backward);
// and leaves the rest as it is (local attention, local residual boundaries). Layers run what is
// installed whenever their input is a sequence shard; on a whole sequence (evaluation on one rank)
// they attend locally. Later plans add tensor-parallel layers and their residual boundaries here.
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
  bool activation_checkpoint = false;  // train.activation_checkpoint: full
};

void parallelize(Llama& model, const ParallelPlan& plan);

}  // namespace loom
