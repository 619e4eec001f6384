// The trainer's optimizer, chosen by train.optimizer.
//   adamw: AdamW on every parameter.
//   muon:  Muon on the 2-D weights inside the layers (attention, MLP and LaCT projections) and
//          AdamW on the rest: embeddings and the LM head (a lookup and a classifier rather than maps
//          between hidden states), norm gains, biases and LaCT's per-head tensors. Muon's steps are
//          scaled to AdamW's typical update size (MuonScale::kMatchAdamW), so train.lr,
//          train.weight_decay and the schedule mean the same for both parts.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "optim/adamw.h"
#include "optim/muon.h"
#include "runtime/core/config.h"
#include "runtime/core/named_tensors.h"

namespace loom {

// True for the parameters train.optimizer: muon gives to Muon.
bool is_muon_parameter(const std::string& name, const torch::Tensor& p);

class TrainingOptimizer {
 public:
  // `slices`: how Muon reaches the whole matrices of tensor-parallel slices (muon.h).
  TrainingOptimizer(const NamedTensors& params, const TrainConfig& train, MatrixSlices slices = {});
  void step(double lr);  // parameters without a gradient are left alone
  // Both parts' state under disjoint names ("<param>.exp_avg", "<param>.momentum", ...).
  NamedTensors state() const;
  void load_state(const NamedTensors& state);
  // "adamw on all 21 tensors" or "muon on 12 matrices (0.8M parameters), adamw on 9 tensors (0.1M)".
  std::string describe() const;

 private:
  NamedTensors adamw_params_, muon_params_;
  std::unique_ptr<AdamW> adamw_;
  std::unique_ptr<Muon> muon_;
};

}  // namespace loom
