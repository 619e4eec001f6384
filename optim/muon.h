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

// How an orthogonalised step (singular values near 1, so an element RMS near 1/sqrt(max(rows, cols)))
// is scaled before the learning rate multiplies it.
enum class MuonScale {
  kShape,       // sqrt(max(1, rows/cols)): tall and wide matrices move by similar per-element amounts
  kMatchAdamW,  // 0.2 sqrt(max(rows, cols)): an element RMS of about 0.2, AdamW's typical one, so the
                // same learning rate and weight decay serve both (Liu et al., "Muon is Scalable for
                // LLM Training", 2025)
};

struct MuonOptions {
  double momentum = 0.95;
  bool nesterov = true;
  double weight_decay = 0.0;  // decoupled: W <- W (1 - lr wd)
  NsSchedule schedule = NsSchedule::kClassic;
  int steps = 5;
  MuonScale scale = MuonScale::kShape;
};

// SGD with momentum whose step is the orthogonalised momentum. For 2-D parameters only
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
