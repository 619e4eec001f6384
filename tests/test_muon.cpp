// Muon's Newton–Schulz orthogonalisation, the Muon optimizer, and train.optimizer: muon.
#include "optim/muon.h"
#include "optim/training_optimizer.h"
#include "tests/test_util.h"

namespace loom {
namespace {

torch::Tensor singular_values(const torch::Tensor& x) { return std::get<1>(torch::linalg_svd(x, false)); }

TEST(NewtonSchulz, PushesEverySingularValueTowardsOne) {
  torch::manual_seed(1);
  // Singular values spread over two orders of magnitude (five iterations lift the smallest by
  // about a^5 ~ 1000 after the Frobenius scaling; much smaller ones stay small, by design).
  const auto [u, s, vt] = torch::linalg_svd(torch::randn({48, 32}, torch::kFloat64), false);
  const auto g = torch::matmul(u * torch::logspace(0, -2, 32, 10, torch::kFloat64), vt);
  for (const auto schedule : {NsSchedule::kPerIteration, NsSchedule::kClassic}) {
    const auto sv = singular_values(newton_schulz(g, schedule));
    const double lo = sv.min().item<double>(), hi = sv.max().item<double>();
    std::printf("%s: singular values in [%.3f, %.3f]\n", schedule == NsSchedule::kPerIteration ? "LaCT's five triples" : "classic triple", lo, hi);
    // LaCT's schedule lands much closer to 1 than the classic triple (measured 0.98-1.11 vs 0.68-1.15).
    EXPECT_GT(lo, schedule == NsSchedule::kPerIteration ? 0.95 : 0.6);
    EXPECT_LT(hi, schedule == NsSchedule::kPerIteration ? 1.12 : 1.2);
  }
}

TEST(NewtonSchulz, KeepsTheSingularVectors) {
  // An odd polynomial of G G^T times G changes only the singular values: U^T NS(G) V is diagonal.
  torch::manual_seed(2);
  const auto g = torch::randn({20, 30}, torch::kFloat64);
  const auto [u, s, vt] = torch::linalg_svd(g, false);
  const auto core = torch::matmul(torch::matmul(u.t(), newton_schulz(g)), vt.t());
  const auto off = core - torch::diag_embed(core.diagonal());
  EXPECT_LT(off.abs().max().item<double>(), 1e-10 * core.abs().max().item<double>());
  EXPECT_GT(core.diagonal().min().item<double>(), 0.3);
}

TEST(NewtonSchulz, BatchesAndTallMatricesAgreeWithOneAtATime) {
  torch::manual_seed(3);
  const auto batch = torch::randn({3, 16, 24}, torch::kFloat64);
  const auto together = newton_schulz(batch);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_LT(test::relative_error(together[i], newton_schulz(batch[i])), 1e-12);
    EXPECT_LT(test::relative_error(newton_schulz(batch[i].t()), together[i].t()), 1e-12) << "tall = transposed wide";
  }
  EXPECT_EQ(newton_schulz(batch.to(torch::kBFloat16)).scalar_type(), torch::kBFloat16);
}

TEST(Muon, DescendsAndKeepsItsState) {
  torch::manual_seed(4);
  const auto target = torch::randn({8, 12});
  auto w = torch::zeros({8, 12}).requires_grad_();
  Muon muon({{"w", w}}, {});
  const auto loss = [&] { return (w - target).pow(2).sum(); };
  const double start = loss().item<double>();
  // Each step moves w by lr * (a near-orthogonal 8 x 12 matrix): about 0.28 in Frobenius norm.
  for (int i = 0; i < 100; ++i) {
    w.mutable_grad() = torch::Tensor();
    loss().backward();
    muon.step(0.1);
  }
  EXPECT_LT(loss().item<double>(), 0.1 * start);
  Muon again({{"w", w}}, {});
  again.load_state(muon.state());
  EXPECT_TRUE(torch::equal(again.state()[0].second, muon.state()[0].second));
  EXPECT_NE(test::error_of([] { Muon m({{"norm.weight", torch::ones({4})}}, {}); }).find("give it to AdamW"), std::string::npos);
}

// train.optimizer: muon gives Muon exactly the 2-D weights inside the layers (LaCT's included) and
// AdamW everything else, and each part moves by the step size of its optimizer: one step of Muon
// scaled to AdamW changes each matrix element by about 0.2 lr (RMS), AdamW's first step by lr.
TEST(TrainingOptimizer, MuonTakesTheLayersMatricesAndMatchesAdamWsStepSize) {
  ModelConfig c = test::tiny_model();
  c.lact.every = 2;
  c.lact.heads = 2;
  c.lact.lowrank = 4;
  Llama model = test::float64_model(c);
  const NamedTensors params = model->parameter_list();
  TrainConfig t;
  t.optimizer = "muon";
  t.weight_decay = 0;
  int64_t matrices = 0;
  for (const auto& [name, p] : params) {
    const bool in_layer = name.rfind("model.layers.", 0) == 0;
    EXPECT_EQ(is_muon_parameter(name, p), in_layer && p.dim() == 2) << name;
    matrices += is_muon_parameter(name, p);
    if (name.find("embed_tokens") != std::string::npos || name.find("lm_head") != std::string::npos ||
        name.find("norm") != std::string::npos || name.find("w0_left") != std::string::npos)
      EXPECT_FALSE(is_muon_parameter(name, p)) << name;
    if (name.find("q_proj") != std::string::npos || name.find("lact.qkv") != std::string::npos ||
        name.find("down_proj") != std::string::npos)
      EXPECT_TRUE(is_muon_parameter(name, p)) << name;
  }
  EXPECT_GE(matrices, 8);

  TrainingOptimizer optimizer(params, t);
  EXPECT_NE(optimizer.describe().find("muon on " + std::to_string(matrices) + " matrices"), std::string::npos) << optimizer.describe();
  std::vector<torch::Tensor> before;
  torch::manual_seed(5);
  for (const auto& [name, p] : params) {
    before.push_back(p.detach().clone());
    p.mutable_grad() = torch::randn_like(p);
  }
  const double lr = 1e-3;
  optimizer.step(lr);
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    const double rms = (p.detach() - before[i]).pow(2).mean().sqrt().item<double>() / lr;
    if (is_muon_parameter(name, p)) {
      EXPECT_GT(rms, 0.14) << name;
      EXPECT_LT(rms, 0.24) << name;
    } else {
      EXPECT_NEAR(rms, 1.0, 0.02) << name;  // AdamW's first step: lr times the sign of the gradient
    }
  }
  TrainingOptimizer adamw_only(params, TrainConfig{});
  EXPECT_EQ(adamw_only.describe().find("muon"), std::string::npos) << adamw_only.describe();
}

// A checkpoint of one optimizer does not load into the other: the message names train.optimizer.
TEST(TrainingOptimizer, StateOfTheOtherOptimizerIsRefused) {
  Llama model = test::float64_model(test::tiny_model());
  TrainConfig muon;
  muon.optimizer = "muon";
  const NamedTensors adamw_state = TrainingOptimizer(model->parameter_list(), TrainConfig{}).state();
  TrainingOptimizer target(model->parameter_list(), muon);
  EXPECT_NE(test::error_of([&] { target.load_state(adamw_state); }).find("train.optimizer"), std::string::npos);
  TrainingOptimizer back(model->parameter_list(), TrainConfig{});
  EXPECT_NE(test::error_of([&] { back.load_state(target.state()); }).find("train.optimizer"), std::string::npos);
}

}  // namespace
}  // namespace loom
