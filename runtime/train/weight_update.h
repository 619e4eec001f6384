// How a step's gradients become the next weights on this rank (parallel.zero): the gradient
// reductions the backward arms, clipping, the optimizer's step and the weights written back into the
// model, and the whole weights and optimizer state a checkpoint holds.
//   0     replicated: every rank holds the master weights and the whole optimizer state, and the
//         gradients are all-reduced into the masters' (optim/master_weights.h, GradientReducer);
//   1, 2  ZeRO over the dp x sp replicas (parallel/data/zero_optimizer.h): each holds 1/n of the
//         master weights and AdamW state; stage 2 reduce-scatters the gradients. With tensor
//         parallelism the slices are sharded over their replicas and the tensors every rank holds
//         whole over all ranks. With one replica the update is the replicated one.
//   1, 2  with Muon: ZeRO by whole parameters, each replica keeping the optimizer state of the
//         parameters it steps (Newton-Schulz needs whole matrices); masters stay whole; stage 2
//         reduce-scatters the gradients and brings each parameter's pieces to its owner.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "parallel/data/gradient_reducer.h"
#include "parallel/mesh.h"
#include "parallel/tensor/tensor_shard.h"
#include "runtime/core/config.h"
#include "runtime/core/precision.h"
#include "runtime/model/llama.h"
#include "runtime/train/checkpoint.h"

namespace loom {

class WeightUpdate {
 public:
  virtual ~WeightUpdate() = default;
  // Armed by the backprop before the step's last backward.
  virtual std::vector<GradientReducer*> reducers() = 0;
  virtual void zero_grads() = 0;
  // Waits for the step's reductions.
  virtual void finish_reductions() = 0;
  // The global norm of the summed gradient, which is then clipped to max_norm (0: not clipped);
  // returns the norm before clipping.
  virtual double clip_gradients(double max_norm) = 0;
  // The optimizer's step, and the model's parameters from the masters.
  virtual void step(double lr) = 0;
  // Every replica continues from the weights of the first rank holding the same slices.
  virtual void synchronise() = 0;
  // What this rank writes of a checkpoint: the master weights under the parameters' names and the
  // optimizer's state, whole tensors or pieces. Collective (tensor-parallel slices are gathered).
  virtual CheckpointShare share() = 0;
  // The weights of checkpoint `dir` (this rank's slices of them), and its optimizer state with
  // `with_state`.
  virtual void load(const std::string& dir, bool with_state) = 0;
  // The optimizer and, with ZeRO, what this rank holds of it.
  virtual std::string describe() const = 0;
};

// The model's parameters are already split by tensor parallelism as `layout` says.
std::unique_ptr<WeightUpdate> make_weight_update(const Config& config, const Mesh& mesh, Llama& model,
                                                 const Precision& precision, const TensorLayout& layout);

}  // namespace loom
