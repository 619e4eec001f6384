// LaCT's language-model layer as a whole (float64): causality, document isolation, the window's
// reach, a partial last chunk, a finite-difference gradient check, recomputation in the backward;
// and a Llama interleaving LaCT
// with full-attention layers, generating token by token, and its config checks.
#include <set>

#include "runtime/model/lact_layer.h"
#include "runtime/model/recompute.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::relative_error;

// Rates large enough (base_lr 0.3) that every update changes the fast weights visibly.
ModelConfig lact_config(int64_t chunk, int64_t window, bool muon = true) {
  ModelConfig c;
  c.d_model = 16;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.init_std = 0.3;
  c.lact = {1, chunk, window, 2, 2, muon, true, 0.3, 2};
  return c;
}

struct Sequence {
  torch::Tensor x, pos, doc;
};

// Documents of the given lengths packed into one sequence, inputs random.
Sequence packed(const std::vector<int64_t>& lengths, int64_t d_model) {
  std::vector<int64_t> pos, doc;
  for (size_t i = 0; i < lengths.size(); ++i)
    for (int64_t p = 0; p < lengths[i]; ++p) {
      pos.push_back(p);
      doc.push_back(static_cast<int64_t>(i));
    }
  torch::manual_seed(12);
  return {torch::randn({static_cast<int64_t>(pos.size()), d_model}, torch::kFloat64), torch::tensor(pos), torch::tensor(doc)};
}

// Largest change per position between two outputs [N, D].
torch::Tensor change_per_row(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().amax(-1); }

TEST(LactLayer, ChangingATokenChangesNothingBeforeIt) {
  const auto c = lact_config(5, 4);  // 23 tokens: chunks of 5, the last one partial
  auto layer = test::float64_module<LactLayer>(c);
  auto s = packed({23}, c.d_model);
  const auto before = layer->forward(s.x, s.pos, s.doc);
  for (int64_t p : {0, 4, 11, 22}) {
    auto x = s.x.clone();
    x[p] += 1.0;
    const auto change = change_per_row(layer->forward(x, s.pos, s.doc), before);
    if (p > 0) EXPECT_EQ(change.slice(0, 0, p).max().item<double>(), 0.0) << "token " << p << " leaked backwards";
    EXPECT_GT(change[p].item<double>(), 1e-6);
  }
}

// model.lact.rope: false leaves the fast queries and keys unrotated, so the layer (whose window
// attention sees relative positions only) gives the same output wherever the document starts; with
// RoPE on them (the reference) it does not.
TEST(LactLayer, WithoutRopeOnTheFastWeightsTheLayerIgnoresWhereTheDocumentStarts) {
  for (const bool rope : {false, true}) {
    auto c = lact_config(5, 4);
    c.lact.rope = rope;
    auto layer = test::float64_module<LactLayer>(c);
    const auto s = packed({23}, c.d_model);
    const double change = relative_error(layer->forward(s.x, s.pos + 37, s.doc), layer->forward(s.x, s.pos, s.doc));
    if (rope) EXPECT_GT(change, 1e-6);
    else EXPECT_LT(change, 1e-12);
  }
}

// Chunks far longer than the sequence: the fast weights never update, so the fast branch is
// per-token and only the window carries a token's influence: exactly window-1 positions ahead.
TEST(LactLayer, WithoutUpdatesATokenReachesExactlyTheWindow) {
  const int64_t window = 4, p = 6;
  const auto c = lact_config(1000, window);
  auto layer = test::float64_module<LactLayer>(c);
  auto s = packed({20}, c.d_model);
  auto x = s.x.clone();
  x[p] += 1.0;
  const auto change = change_per_row(layer->forward(x, s.pos, s.doc), layer->forward(s.x, s.pos, s.doc));
  for (int64_t i = p; i < p + window; ++i) EXPECT_GT(change[i].item<double>(), 1e-8) << "position " << i;
  EXPECT_EQ(change.slice(0, p + window).max().item<double>(), 0.0) << "seen beyond the window";
}

// With updates, the fast weights carry a token past the window (the point of LaCT): a change in
// chunk 0 reaches every later chunk of its document, and nothing of the next document.
TEST(LactLayer, FastWeightsCarryPastTheWindowButNotIntoTheNextDocument) {
  const auto c = lact_config(5, 2);
  auto layer = test::float64_module<LactLayer>(c);
  auto s = packed({17, 12}, c.d_model);
  auto x = s.x.clone();
  x[1] += 1.0;
  const auto change = change_per_row(layer->forward(x, s.pos, s.doc), layer->forward(s.x, s.pos, s.doc));
  EXPECT_GT(change.slice(0, 5, 17).min().item<double>(), 1e-8) << "chunks 1-3 should read the update of chunk 0";
  EXPECT_EQ(change.slice(0, 17).max().item<double>(), 0.0) << "the next document must not see it";
  // The second document alone gives what it gives packed behind the first.
  const auto alone = packed({12}, c.d_model);
  const auto whole = layer->forward(s.x, s.pos, s.doc).slice(0, 17);
  EXPECT_LT(relative_error(layer->forward(s.x.slice(0, 17), alone.pos, alone.doc), whole), 1e-12);
}

TEST(LactLayer, GradientsMatchFiniteDifferences) {
  for (bool muon : {false, true}) {
    const auto c = lact_config(4, 3, muon);
    auto layer = test::float64_module<LactLayer>(c);
    const auto s = packed({9, 6}, c.d_model);
    torch::manual_seed(13);
    const auto weights = torch::randn({s.x.size(0), c.d_model}, torch::kFloat64);
    const auto loss = [&] { return (layer->forward(s.x, s.pos, s.doc) * weights).sum(); };
    layer->zero_grad();
    loss().backward();
    for (const auto& item : layer->named_parameters()) {
      auto& p = item.value();
      const auto direction = torch::randn_like(p);
      const double analytic = (p.grad() * direction).sum().item<double>();
      const double eps = 1e-6;
      torch::NoGradGuard no_grad;
      p.add_(direction, eps);
      const double up = loss().item<double>();
      p.add_(direction, -2 * eps);
      const double down = loss().item<double>();
      p.add_(direction, eps);
      const double numeric = (up - down) / (2 * eps);
      EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << item.key() << (muon ? " muon" : "");
    }
  }
}

// Whether a node whose name contains `name` lies in the autograd graph behind t.
bool graph_has(const torch::Tensor& t, const std::string& name) {
  std::vector<torch::autograd::Node*> todo{t.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  while (!todo.empty()) {
    auto* node = todo.back();
    todo.pop_back();
    if (!node || !seen.insert(node).second) continue;
    if (node->name().find(name) != std::string::npos) return true;
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function.get());
  }
  return false;
}

TEST(Recompute, RunsTheFunctionAgainInTheBackwardWithTheSameGradients) {
  int calls = 0;
  const TensorFunction fn = [&](const std::vector<torch::Tensor>& in) {
    ++calls;
    return std::vector<torch::Tensor>{torch::sin(in[0]) * in[1], in[0].exp().sum()};
  };
  torch::manual_seed(15);
  auto a = torch::randn({5}, torch::kFloat64).requires_grad_(), b = torch::randn({5}, torch::kFloat64).requires_grad_();
  const auto direct = fn({a, b});
  (direct[0].sum() + 2 * direct[1]).backward();
  const auto ga = a.grad().clone(), gb = b.grad().clone();
  a.mutable_grad() = torch::Tensor();
  b.mutable_grad() = torch::Tensor();
  calls = 0;
  const auto out = recompute_in_backward(fn, {a, b});
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(torch::equal(out[0], direct[0]));
  (out[0].sum() + 2 * out[1]).backward();
  EXPECT_EQ(calls, 2) << "the backward recomputes";
  EXPECT_LT(relative_error(a.grad(), ga), 1e-15);
  EXPECT_LT(relative_error(b.grad(), gb), 1e-15);
}

// model.lact.checkpoint: the same outputs and gradients, with the updates recomputed in the backward.
TEST(LactLayer, RecomputationGivesIdenticalGradients) {
  std::vector<std::vector<torch::Tensor>> runs;
  for (bool recompute : {false, true}) {
    auto c = lact_config(4, 3);
    c.lact.checkpoint = recompute;
    auto layer = test::float64_module<LactLayer>(c);
    const auto s = packed({11, 6}, c.d_model);
    const auto out = layer->forward(s.x, s.pos, s.doc);
    EXPECT_EQ(graph_has(out, "RecomputeFn"), recompute);
    out.pow(2).sum().backward();
    std::vector<torch::Tensor> run{out.detach()};
    for (const auto& p : layer->parameters()) run.push_back(p.grad());
    runs.push_back(run);
  }
  for (size_t i = 0; i < runs[0].size(); ++i) EXPECT_LT(relative_error(runs[1][i], runs[0][i]), 1e-12) << "tensor " << i;
}

TEST(LactModel, InterleavesLactWithFullAttentionLayers) {
  ModelConfig c = test::tiny_model();
  c.n_layers = 4;
  c.lact = {2, 8, 4, 2, 1, false, true, 0.1, 0};
  Llama model(c);
  const auto names = model->parameter_list();
  const auto has = [&](const std::string& name) {
    return std::any_of(names.begin(), names.end(), [&](const auto& e) { return e.first == name; });
  };
  EXPECT_TRUE(has("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(has("model.layers.1.lact.qkv.weight"));
  EXPECT_TRUE(has("model.layers.1.lact.w0"));
  EXPECT_FALSE(has("model.layers.1.self_attn.q_proj.weight"));
  EXPECT_TRUE(has("model.layers.3.lact.momentum.weight"));
  const auto tokens = torch::randint(0, c.vocab_size, {30});
  const auto logits = model->forward(tokens, torch::arange(30), torch::zeros({30}, torch::kInt64));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{30, c.vocab_size}));
}

// Generation carries the window, the fast weights, their momentum and the chunk in progress: fed in
// pieces that start and end anywhere inside chunks, it gives the rows of one full forward.
TEST(LactModel, IncrementalGenerationEqualsTheFullForward) {
  for (bool muon : {false, true}) {
    ModelConfig c = test::tiny_model();
    c.n_layers = 3;
    c.lact = {2, 4, 3, 2, 2, muon, true, 0.3, 2};
    Llama model = test::float64_model(c);
    torch::manual_seed(14);
    const int64_t n = 31;
    const auto tokens = torch::randint(0, c.vocab_size, {n}), positions = torch::arange(n);
    const auto full = model->forward(tokens, positions, torch::zeros({n}, torch::kInt64));
    KvCache cache;
    int64_t start = 0;
    for (int64_t piece : {7, 1, 1, 4, 9, 1, 8}) {
      const auto rows = model->forward_cached(tokens.narrow(0, start, piece), positions.narrow(0, start, piece), cache);
      EXPECT_LT(relative_error(rows, full.narrow(0, start, piece)), 1e-10) << "tokens " << start << "+" << piece;
      start += piece;
    }
    ASSERT_EQ(start, n);
    EXPECT_EQ(cache.layers[1].lact.pending_tokens, n % 4) << "the chunk in progress";
  }
}

TEST(LactModel, ConfigRejectsWhatIsNotBuiltYet) {
  const std::string bad_heads = test::error_of([] { parse_config("model:\n  lact: {every: 1, heads: 3}\n", "t"); });
  EXPECT_NE(bad_heads.find("model.lact.heads"), std::string::npos) << bad_heads;
  const std::string seco = test::error_of([] { parse_config("model:\n  lact: {every: 1}\ntrain: {strategy: seco}\n", "t"); });
  EXPECT_NE(seco.find("planned"), std::string::npos) << seco;
}

}  // namespace
}  // namespace loom
