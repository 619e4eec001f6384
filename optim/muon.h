// Muon: orthogonalised updates for matrices. newton_schulz maps a matrix G = U S Vᵀ to
// approximately U Vᵀ (all singular values pushed towards 1) with a few odd-polynomial iterations
// X <- a X + (b A + c A A) X, A = X Xᵀ, after scaling G to unit Frobenius norm. LaCT uses it on its
// fast-weight updates (seco-lact.md, B.3) and it serves as an outer optimizer for 2-D weights.
#pragma once
#include <torch/torch.h>

#include "runtime/core/named_tensors.h"

namespace loom {

enum class NsSchedule {
  kPerIteration,  // LaCT's five (a, b, c) triples, one per iteration (5 steps)
  kClassic,       // one triple (3.4445, -4.7750, 2.0315) repeated `steps` times
};

// g [..., m, n] (a batch of matrices) -> the orthogonalised matrices, same shape and dtype. The
// iteration runs on the wider orientation (transposing tall matrices) in float32 or wider.
torch::Tensor newton_schulz(const torch::Tensor& g, NsSchedule schedule = NsSchedule::kPerIteration, int steps = 5);

struct MuonOptions {
  double momentum = 0.95;
  bool nesterov = true;
  double weight_decay = 0.0;
  NsSchedule schedule = NsSchedule::kClassic;
  int steps = 5;
};

// SGD with momentum whose step is the orthogonalised momentum, scaled by sqrt(max(1, rows/cols))
// so that tall and wide matrices move by similar per-element amounts. For 2-D parameters only
// (embeddings, norms and the LM head are better left to AdamW).
class Muon {
 public:
  Muon(const NamedTensors& params, MuonOptions options);
  void step(double lr);  // parameters without a gradient are left alone
  NamedTensors state() const;
  void load_state(const NamedTensors& state);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, momentum;
  };
  std::vector<Slot> slots_;
  MuonOptions options_;
};

}  // namespace loom
