// One packed micro-batch as the tensors every layer passes along: several documents back to back,
// each with its own positions (restarting at 0), told apart by document ids. The loader makes it
// (runtime/data), sequence parallelism cuts it into shards (parallel/sequence), the model reads it.
#pragma once
#include <torch/torch.h>

namespace loom {

struct PackedTensors {
  torch::Tensor tokens, positions, doc_ids, labels;  // int64 [N]; doc id -1 = padding, label -1 = no loss
  int64_t label_count = 0;                           // labels of the whole sequence (before any sharding)
};

// The same with tokens and labels on `device`. Positions and document ids stay on the host, where
// the attention kernels plan their blocks and RoPE computes its angles.
inline PackedTensors on_device(PackedTensors t, const torch::Device& device) {
  t.tokens = t.tokens.to(device);
  if (t.labels.defined()) t.labels = t.labels.to(device);
  return t;
}

}  // namespace loom
