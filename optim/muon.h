// Muon: orthogonalised updates for matrices (Jordan et al. 2024): SGD with momentum whose step is
// the momentum orthogonalised by Newton-Schulz (kernels/newton_schulz.h).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

#include "kernels/newton_schulz.h"
#include "runtime/core/named_tensors.h"

namespace loom {

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

// Where a parameter is a slice of a matrix split over ranks (tensor parallelism), Muon must
// orthogonalise the whole matrix: `whole(name, slice)` gives it (collective over the ranks that hold
// its slices), `slice_of(name, whole)` this rank's slice of a whole matrix. Unset: parameters are
// whole.
struct MatrixSlices {
  std::function<torch::Tensor(const std::string& name, const torch::Tensor& slice)> whole;
  std::function<torch::Tensor(const std::string& name, const torch::Tensor& whole)> slice_of;
};

// SGD with momentum whose step is the orthogonalised momentum. For 2-D parameters only
// (embeddings, norms and the LM head are better left to AdamW).
class Muon {
 public:
  Muon(const NamedTensors& params, MuonOptions options, MatrixSlices slices = {});
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
  MatrixSlices slices_;
};

}  // namespace loom
