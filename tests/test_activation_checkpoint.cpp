// Activation checkpointing (parallelize's activation_checkpoint: every layer keeps its inputs and
// recomputes its forward in the backward) gives the loss and every gradient of the plain model,
// with and without LaCT layers; end to end, training with it matches training without.
#include "runtime/model/parallelize.h"
#include "runtime/train/trainer.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::relative_error;

PackedTensors two_documents(int64_t vocab) {
  torch::manual_seed(9);
  const int64_t n = 41;
  return {torch::randint(vocab, {n}, torch::kInt64), torch::cat({torch::arange(25), torch::arange(16)}),
          torch::cat({torch::zeros({25}, torch::kInt64), torch::ones({16}, torch::kInt64)}),
          torch::randint(vocab, {n}, torch::kInt64), n};
}

// Local attention that counts its calls: a recomputed layer attends twice per step.
struct CountingAttention : LocalAttention {
  explicit CountingAttention(int64_t window) : LocalAttention(window) {}
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                       const SequenceShard& input) override {
    ++calls;
    return LocalAttention::attend(q, k, v, scale, input);
  }
  int calls = 0;
};

std::vector<std::shared_ptr<CountingAttention>> count_attention(Llama& model) {
  std::vector<std::shared_ptr<CountingAttention>> counters;
  for (int64_t i = 0; i < model->num_layers(); ++i) {
    auto& core = model->layer(i).core_attention();
    counters.push_back(std::make_shared<CountingAttention>(std::static_pointer_cast<LocalAttention>(core)->window()));
    core = counters.back();
  }
  return counters;
}

TEST(ActivationCheckpoint, FullGivesTheLossAndGradientsOfThePlainModel) {
  ModelConfig with_lact = test::tiny_model();
  with_lact.lact = {2, 8, 6, 2, 2, false, true, 0.3, 2};
  for (const ModelConfig& c : {test::tiny_model(), with_lact}) {
    Llama plain = test::float64_model(c), checkpointed = test::float64_model(c);
    parallelize(checkpointed, {"local", nullptr, nullptr, nullptr, true});
    const auto plain_calls = count_attention(plain), checkpointed_calls = count_attention(checkpointed);
    const PackedTensors t = two_documents(c.vocab_size);
    const auto want = plain->loss(whole_sequence(t));
    const auto got = checkpointed->loss(whole_sequence(t));
    want.backward();
    got.backward();
    const std::string name = c.lact.every ? "with LaCT" : "attention only";
    for (size_t l = 0; l < plain_calls.size(); ++l) {
      EXPECT_EQ(plain_calls[l]->calls, 1) << name << " layer " << l;
      EXPECT_EQ(checkpointed_calls[l]->calls, 2) << name << " layer " << l << " runs again in the backward";
    }
    EXPECT_LT(relative_error(got, want), 1e-14) << name;
    const auto a = plain->parameter_list(), b = checkpointed->parameter_list();
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_LT(relative_error(b[i].second.grad(), a[i].second.grad()), 1e-13) << name << " " << a[i].first;
  }
}

TEST(ActivationCheckpoint, TrainingWithItMatchesTrainingWithout) {
  test::ScratchDir dir;
  Config plain = test::tiny_config(test::write_tiny_passkey(dir), dir.path("plain"));
  Config checkpointed = plain;
  checkpointed.run.dir = dir.path("checkpointed");
  checkpointed.train.activation_checkpoint = "full";
  train(plain);
  train(checkpointed);
  const auto a = test::step_records(plain.run.dir), b = test::step_records(checkpointed.run.dir);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double want = a[i]["loss"];
    EXPECT_NEAR(b[i]["loss"].get<double>(), want, 1e-12 * want) << "step " << i + 1;
  }
}

}  // namespace
}  // namespace loom
