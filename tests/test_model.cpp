// The Llama model: Hugging Face parameter names, a float64 finite-difference gradient check of the
// whole model, document isolation, and KV-cached generation against the full forward.
#include <random>

#include "runtime/data/tokenizer.h"
#include "runtime/model/generate.h"
#include "runtime/model/llama.h"
#include "runtime/model/lm_loss.h"
#include "runtime/data/batch_loader.h"
#include "tests/test_util.h"

namespace loom {
namespace {

// Two documents (5 and 4 tokens) and 2 padding slots.
PackedTensors tiny_batch() {
  PackedTensors b;
  b.tokens = torch::tensor({1, 5, 9, 3, 7, 2, 8, 8, 4, 0, 0});
  b.positions = torch::tensor({0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0});
  b.doc_ids = torch::tensor({0, 0, 0, 0, 0, 1, 1, 1, 1, -1, -1});
  b.labels = torch::tensor({5, 9, 3, 7, -1, 8, 8, 4, -1, -1, -1});
  b.label_count = 7;
  return b;
}

double loss_of(Llama& m, const PackedTensors& b) {
  return (summed_loss(m->forward(b.tokens, b.positions, b.doc_ids), b.labels) / b.label_count).item<double>();
}

TEST(Model, ParametersCarryHuggingFaceNames) {
  const Llama m = test::float64_model(test::tiny_model());
  std::vector<std::string> names;
  for (const auto& p : m->named_parameters()) names.push_back(p.key());
  const std::vector<std::string> layer0 = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                                           "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                                           "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
                                           "model.layers.0.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
                                           "model.layers.0.post_attention_layernorm.weight"};
  for (const auto& n : layer0) EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  for (const auto& n : {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  EXPECT_EQ(names.size(), 2u + 2u * 9u + 1u);
  const Llama tied = test::float64_model(test::tiny_model(true));
  EXPECT_EQ(tied->named_parameters().size(), names.size() - 1) << "tied embeddings have no lm_head";
}

TEST(Model, GradientsMatchFiniteDifferences) {
  for (bool tied : {false, true}) {
    Llama m = test::float64_model(test::tiny_model(tied));
    const PackedTensors b = tiny_batch();
    (summed_loss(m->forward(b.tokens, b.positions, b.doc_ids), b.labels) / b.label_count).backward();
    torch::NoGradGuard no_grad;
    std::mt19937 rng(5);
    for (auto& item : m->named_parameters()) {
      auto flat = item.value().view(-1);
      const auto grad = item.value().grad().view(-1);
      for (int trial = 0; trial < 4; ++trial) {
        const int64_t i = std::uniform_int_distribution<int64_t>(0, flat.numel() - 1)(rng);
        const double h = 1e-5, original = flat[i].item<double>();
        flat[i] = original + h;
        const double up = loss_of(m, b);
        flat[i] = original - h;
        const double down = loss_of(m, b);
        flat[i] = original;
        const double numeric = (up - down) / (2 * h), analytic = grad[i].item<double>();
        EXPECT_NEAR(analytic, numeric, 1e-7 + 1e-6 * std::fabs(numeric)) << item.key() << "[" << i << "] tied=" << tied;
      }
    }
  }
}

TEST(Model, DocumentsDoNotSeeEachOther) {
  Llama m = test::float64_model(test::tiny_model());
  torch::NoGradGuard no_grad;
  PackedTensors b = tiny_batch();
  const auto before = m->forward(b.tokens, b.positions, b.doc_ids);
  b.tokens.slice(0, 0, 5).fill_(13);  // rewrite document 0
  const auto after = m->forward(b.tokens, b.positions, b.doc_ids);
  EXPECT_TRUE(torch::equal(before.slice(0, 5, 9), after.slice(0, 5, 9))) << "document 1 changed";
  EXPECT_FALSE(torch::allclose(before.slice(0, 0, 5), after.slice(0, 0, 5)));
}

TEST(Model, CachedForwardEqualsFullForward) {
  Llama m = test::float64_model(test::tiny_model());
  torch::NoGradGuard no_grad;
  const auto tokens = torch::tensor({3, 14, 15, 9, 26, 5, 35, 8, 9, 7});
  const auto positions = torch::arange(10);
  const auto full = m->forward(tokens, positions, torch::zeros_like(positions));
  KvCache cache;
  std::vector<torch::Tensor> pieces = {m->forward_cached(tokens.slice(0, 0, 4), positions.slice(0, 0, 4), cache)};
  for (int64_t t = 4; t < 10; ++t)
    pieces.push_back(m->forward_cached(tokens.slice(0, t, t + 1), positions.slice(0, t, t + 1), cache));
  EXPECT_LT(test::relative_error(torch::cat(pieces), full), 1e-12);
}

TEST(Model, GreedyGenerationEqualsRepeatedFullForward) {
  Llama m = test::float64_model(test::tiny_model());
  std::vector<int64_t> seq = {1, 2, 3};
  const auto generated = generate(m, seq, {8, 0.0, -1, 0});
  torch::NoGradGuard no_grad;
  for (int64_t expected : generated.tokens) {
    const auto pos = torch::arange(static_cast<int64_t>(seq.size()));
    const auto logits = m->forward(torch::tensor(seq), pos, torch::zeros_like(pos));
    ASSERT_EQ(logits[-1].argmax().item<int64_t>(), expected);
    seq.push_back(expected);
  }
  EXPECT_EQ(generated.tokens.size(), 8u);
  EXPECT_EQ(generated.stop, GenerateStop::max_new);
}

TEST(Model, GenerationEndsAfterTheStopToken) {
  Llama m = test::float64_model(test::tiny_model());
  const int64_t first = generate(m, {1, 2, 3}, {1, 0.0, -1, 0}).tokens.at(0);
  const Generated g = generate(m, {1, 2, 3}, {8, 0.0, first, 0});
  EXPECT_EQ(g.tokens, std::vector<int64_t>{first});
  EXPECT_EQ(g.stop, GenerateStop::stop_token);
}

// RoPE would accept any position, so nothing else would stop the model from running past the
// length it was built for.
TEST(Model, GenerationStopsWhenTheTextReachesMaxSeqLen) {
  ModelConfig c = test::tiny_model();
  c.max_seq_len = 7;
  Llama m = test::float64_model(c);
  const Generated g = generate(m, {1, 2, 3}, {8, 0.0, -1, 0});
  EXPECT_EQ(g.tokens.size(), 4u);
  EXPECT_EQ(g.stop, GenerateStop::context_full);
  EXPECT_EQ(generate(m, {1, 2, 3, 4, 5, 6}, {8, 0.0, -1, 0}).tokens.size(), 1u);
  const std::string refused = test::error_of([&] { generate(m, {1, 2, 3, 4, 5, 6, 7}, {8, 0.0, -1, 0}); });
  EXPECT_NE(refused.find("model.max_seq_len = 7"), std::string::npos) << refused;
}

}  // namespace
}  // namespace loom
