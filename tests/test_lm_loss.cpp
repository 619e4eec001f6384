// The LM head and loss computed rows at a time (float64): the same loss and gradients as through
// the whole logits, for chunk sizes that do and do not divide the rows, with unlabelled rows, tied
// and untied heads; and nothing but the loss without grad mode.
#include "runtime/model/lm_loss.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::relative_error;

struct Head {
  torch::Tensor hidden, weight, labels;
};

Head random_head(int64_t rows, int64_t dim, int64_t vocab) {
  torch::manual_seed(3);
  auto labels = torch::randint(vocab, {rows}, torch::kInt64);
  labels.index_put_({torch::arange(0, rows, 4)}, -1);  // every fourth row carries no loss
  return {torch::randn({rows, dim}, torch::kFloat64).requires_grad_(), torch::randn({vocab, dim}, torch::kFloat64).requires_grad_(),
          labels};
}

TEST(ChunkedHeadLoss, EqualsTheLossThroughTheWholeLogitsAndItsGradients) {
  const Head ref = random_head(37, 8, 11);
  const auto want = summed_loss(torch::matmul(ref.hidden, ref.weight.t()), ref.labels);
  want.backward();
  for (int64_t rows : {1, 5, 16, 37, 100}) {
    const Head h{ref.hidden.detach().clone().requires_grad_(), ref.weight.detach().clone().requires_grad_(), ref.labels};
    const auto got = chunked_head_loss(h.hidden, h.weight, h.labels, rows);
    (got * 0.5).backward();  // the backward scales what the forward computed by the incoming gradient
    EXPECT_LT(relative_error(got, want), 1e-12) << rows << " rows";
    EXPECT_LT(relative_error(h.hidden.grad() * 2, ref.hidden.grad()), 1e-12) << rows << " rows";
    EXPECT_LT(relative_error(h.weight.grad() * 2, ref.weight.grad()), 1e-12) << rows << " rows";
    EXPECT_EQ(h.hidden.grad().index({torch::arange(0, 37, 4)}).abs().max().item<double>(), 0.0)
        << "unlabelled rows get no gradient";
  }
}

TEST(ChunkedHeadLoss, WithoutGradModeItComputesTheLossAlone) {
  const Head h = random_head(20, 6, 9);
  torch::NoGradGuard no_grad;
  const auto got = chunked_head_loss(h.hidden, h.weight, h.labels, 3);
  EXPECT_FALSE(got.requires_grad());
  EXPECT_LT(relative_error(got, summed_loss(torch::matmul(h.hidden, h.weight.t()), h.labels)), 1e-12);
}

// Llama::loss with head rows: the tied head is the embedding, whose gradient then has both parts.
TEST(ChunkedHeadLoss, TheModelsLossMatchesItsLogitsTiedAndUntied) {
  for (bool tied : {false, true}) {
    Llama whole = test::float64_model(test::tiny_model(tied)), chunked = test::float64_model(test::tiny_model(tied));
    torch::manual_seed(5);
    const int64_t n = 29;
    PackedTensors t{torch::randint(40, {n}, torch::kInt64), torch::cat({torch::arange(17), torch::arange(12)}),
                    torch::cat({torch::zeros({17}, torch::kInt64), torch::ones({12}, torch::kInt64)}),
                    torch::randint(40, {n}, torch::kInt64), n};
    const auto want = whole->loss(whole_sequence(t));
    const auto got = chunked->loss(whole_sequence(t), 6);
    want.backward();
    got.backward();
    EXPECT_LT(relative_error(got, want), 1e-12) << (tied ? "tied" : "untied");
    const auto a = whole->parameter_list(), b = chunked->parameter_list();
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_LT(relative_error(b[i].second.grad(), a[i].second.grad()), 1e-12) << a[i].first << (tied ? " tied" : " untied");
  }
}

}  // namespace
}  // namespace loom
