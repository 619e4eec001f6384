// Activation checkpointing (parallelize's activation_checkpoint) gives the loss and every gradient
// of the plain model, with and without LaCT layers: full (every layer keeps its inputs and
// recomputes its forward in the backward) and selective (every MLP keeps gate and up and recomputes
// silu(gate)·up), which keeps exactly the bytes of two of the four MLP rows per token less.
// End to end, training with either matches training without, under chunk-wise backprop too.
#include <malloc.h>
#include <map>

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

TEST(ActivationCheckpoint, SelectiveAndFullGiveTheLossAndGradientsOfThePlainModel) {
  ModelConfig with_lact = test::tiny_model();
  with_lact.lact = {2, 8, 6, 2, 2, false, true, 0.3, 2};
  for (const char* mode : {"selective", "full"})
    for (const ModelConfig& c : {test::tiny_model(), with_lact}) {
      Llama plain = test::float64_model(c), checkpointed = test::float64_model(c);
      parallelize(checkpointed, {"local", nullptr, nullptr, nullptr, mode});
      const auto plain_calls = count_attention(plain), checkpointed_calls = count_attention(checkpointed);
      const PackedTensors t = two_documents(c.vocab_size);
      const auto want = plain->loss(whole_sequence(t));
      const auto got = checkpointed->loss(whole_sequence(t));
      want.backward();
      got.backward();
      const std::string name = std::string(mode) + (c.lact.every ? ", with LaCT" : ", attention only");
      const int runs = std::string(mode) == "full" ? 2 : 1;  // a fully checkpointed layer runs again in the backward
      for (size_t l = 0; l < plain_calls.size(); ++l) {
        EXPECT_EQ(plain_calls[l]->calls, 1) << name << " layer " << l;
        EXPECT_EQ(checkpointed_calls[l]->calls, runs) << name << " layer " << l;
      }
      EXPECT_LT(relative_error(got, want), 1e-14) << name;
      const auto a = plain->parameter_list(), b = checkpointed->parameter_list();
      for (size_t i = 0; i < a.size(); ++i)
        EXPECT_LT(relative_error(b[i].second.grad(), a[i].second.grad()), 1e-13) << name << " " << a[i].first;
    }
}

// Bytes of the C library's heap in use (every arena, and the blocks it maps separately).
int64_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<int64_t>(m.uordblks + m.hblkhd);
}

// What the model's graph holds after a forward: heap in use with the loss alive, less before.
int64_t bytes_kept_by_forward(Llama& model, const PackedTensors& t) {
  const SequenceShard input = whole_sequence(t);
  model->loss(input).backward();  // first use: the libraries' own buffers settle
  const int64_t before = heap_in_use();
  const torch::Tensor loss = model->loss(input);
  const int64_t kept = heap_in_use() - before;
  loss.backward();
  return kept;
}

TEST(ActivationCheckpoint, SelectiveKeepsTwoMlpRowsPerTokenLessAndFullKeepsLayerInputs) {
  ModelConfig c = test::tiny_model();
  c.d_model = 32;
  c.d_ff = 512;  // the MLP's rows dominate what the graph keeps, so the counted difference is clear
  torch::manual_seed(5);
  const int64_t n = 1024;
  const PackedTensors t{torch::randint(c.vocab_size, {n}, torch::kInt64), torch::arange(n),
                        torch::zeros({n}, torch::kInt64), torch::randint(c.vocab_size, {n}, torch::kInt64), n};
  std::map<std::string, int64_t> kept;
  for (const char* mode : {"none", "selective", "full"}) {
    Llama model = test::float64_model(c);
    parallelize(model, {"local", nullptr, nullptr, nullptr, mode});
    kept[mode] = bytes_kept_by_forward(model, t);
  }
  const double two_rows = 2.0 * c.d_ff * n * c.n_layers * sizeof(double);
  const double saved = static_cast<double>(kept["none"] - kept["selective"]);
  EXPECT_NEAR(saved / two_rows, 1.0, 0.02) << kept["none"] << " bytes kept without, " << kept["selective"] << " selective";
  // Full checkpointing keeps each layer's two inputs (residual and normed rows), the LM head's
  // inputs and the logits: less than the MLP rows of one layer.
  EXPECT_LT(kept["full"], two_rows / c.n_layers) << kept["full"] << " bytes kept with full checkpointing";
}

TEST(ActivationCheckpoint, TrainingWithItMatchesTrainingWithout) {
  test::ScratchDir dir;
  const std::string data = test::write_tiny_passkey(dir);
  for (const char* strategy : {"full", "seco"}) {
    Config plain = test::tiny_config(data, dir.path(std::string("plain-") + strategy));
    plain.train.strategy = strategy;
    plain.train.chunk_size = 64;
    train(plain);
    const auto a = test::step_records(plain.run.dir);
    for (const char* mode : {"selective", "full"}) {
      if (std::string(strategy) != "full" && std::string(mode) == "full") continue;  // refused: one of the two
      Config checkpointed = plain;
      checkpointed.run.dir = dir.path(std::string(mode) + "-" + strategy);
      checkpointed.train.activation_checkpoint = mode;
      train(checkpointed);
      const auto b = test::step_records(checkpointed.run.dir);
      ASSERT_EQ(a.size(), b.size()) << mode << " " << strategy;
      for (size_t i = 0; i < a.size(); ++i) {
        const double want = a[i]["loss"];
        EXPECT_NEAR(b[i]["loss"].get<double>(), want, 1e-12 * want) << mode << " " << strategy << " step " << i + 1;
      }
    }
  }
}

}  // namespace
}  // namespace loom
