// How one micro-batch is backpropagated: its forward, loss and backward on this rank, adding the
// gradient of its share of loss / denominator to the parameters' .grad. Two strategies
// (train.strategy):
//   full         one forward and backward over the whole sequence, or over this rank's shard of it
//                under sequence parallelism (full_backprop.h);
//   seco, spaco  chunk by chunk along the sequence, one chunk's activations alive at a time
//                (chunkwise/chunkwise_backprop.h).
#pragma once
#include <cstdint>

#include "runtime/core/packed_tensors.h"

namespace loom {

struct Ring;  // parallel/sequence/sequence_shard.h

struct MicroBatch {
  PackedTensors tokens;  // the whole packed sequence, as the loader gave it (or a placed document)
  int64_t index = 0;     // in the whole run (step x accumulation + position): keys SpaCO's sampling
  bool last = false;     // the last of the step on this rank: gradients may be reduced as they come
  // Set by a placement (step_placement.h): the sequence is split over this ring, not the sp group.
  const Ring* ring = nullptr;
};

// What one micro-batch did on this rank.
struct Backpropagated {
  double loss = 0;      // summed, unscaled
  int64_t tokens = 0;   // real (non-padding) tokens this rank computed
  double flops = 0;     // this rank's share of the training FLOPs
};

class Backprop {
 public:
  virtual ~Backprop() = default;
  virtual Backpropagated run(const MicroBatch& batch, double denominator) = 0;
  // The backward passes run() makes for `batch`: a reducer that reduces after every backward (ZeRO
  // stage 2) issues its collectives once per pass, and every replica must issue as many.
  virtual int64_t backwards(const MicroBatch& batch) const = 0;
};

}  // namespace loom
