// Tensor parallelism's pieces against one process, float64: the reduce + add + norm boundary
// (forward exactly all-reduce + add + RMSNorm, every rank's output bitwise the same, the backward
// against autograd through the unsplit computation), its asynchronous form on a boundary worker
// (bitwise the synchronous one, forward and backward), and the vocab-parallel embedding and loss.
#include <gtest/gtest.h>

#include "kernels/rms_norm.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/tensor/reduce_add_norm.h"
#include "parallel/tensor/vocab_parallel.h"
#include "runtime/model/lm_loss.h"
#include "tests/relative_error.h"

namespace loom {
namespace {

using test::relative_error;

torch::Tensor random_of(int salt, std::vector<int64_t> shape) {
  torch::manual_seed(911 * salt);
  return torch::randn(shape, torch::kFloat64);
}

class TensorParallel : public ::testing::Test {
 protected:
  std::unique_ptr<Communicator> world = mpi_world(60);
  int rank = world->rank(), size = world->size();
};

// 13 rows (not a multiple of 2, 3 or 4 ranks), with a residual and without (the embedding's).
TEST_F(TensorParallel, ReduceAddNormIsAllReduceAddNormWithItsGradients) {
  const int64_t n = 13, d = 6, rows = (n + size - 1) / size;
  const double eps = 1e-5;
  for (const bool with_residual : {true, false}) {
    // Every rank's partial sums and the whole residual, known to every rank.
    std::vector<torch::Tensor> partials;
    for (int r = 0; r < size; ++r) partials.push_back(random_of(10 + r, {n, d}));
    const auto residual_all = random_of(5, {rows * size, d});
    const auto gamma_all = random_of(6, {d}) + 1;
    const auto weight = random_of(7, {n, d});      // the loss: sum(weight * normed) + sum(w2 * residual')
    const auto weight2 = random_of(8, {rows * size, d});

    // One process: all-reduce, add, norm over every row.
    std::vector<torch::Tensor> ref_partials;
    for (const auto& p : partials) ref_partials.push_back(p.clone().requires_grad_());
    const auto ref_residual = residual_all.clone().requires_grad_();
    const auto ref_gamma = gamma_all.clone().requires_grad_();
    auto total = torch::zeros({rows * size, d}, torch::kFloat64);
    for (const auto& p : ref_partials) total = total + torch::cat({p, torch::zeros({rows * size - n, d}, torch::kFloat64)});
    const auto ref_sum = with_residual ? ref_residual + total : total;
    const auto ref_normed = rms_norm(ref_sum, ref_gamma, eps);
    ((weight * ref_normed.narrow(0, 0, n)).sum() + (weight2 * ref_sum).sum()).backward();

    // This rank: its partial sums, its rows of the residual.
    const auto partial = partials[static_cast<size_t>(rank)].clone().requires_grad_();
    const auto residual = residual_all.narrow(0, rank * rows, rows).clone().requires_grad_();
    const auto gamma = gamma_all.clone().requires_grad_();
    const ReducedNorm out = reduce_add_norm(partial, with_residual ? residual : torch::Tensor(), gamma, eps, *world);
    // Each rank's loss: its share of the rows' weight on `normed` (every rank holds them all), and
    // its own rows of the residual.
    ((weight * out.normed).sum() / size + (weight2.narrow(0, rank * rows, rows) * out.residual).sum()).backward();

    const std::string name = with_residual ? "with a residual" : "the embedding's boundary";
    EXPECT_LT(relative_error(out.normed, ref_normed.narrow(0, 0, n)), 1e-13) << name;
    EXPECT_LT(relative_error(out.residual, ref_sum.narrow(0, rank * rows, rows)), 1e-13) << name;
    auto everyone = torch::empty({size * n, d}, torch::kFloat64);
    world->all_gather(out.normed.detach().contiguous(), everyone).wait();
    for (int r = 0; r < size; ++r) EXPECT_TRUE(torch::equal(everyone.narrow(0, r * n, n), out.normed.detach())) << name;
    EXPECT_LT(relative_error(partial.grad(), ref_partials[static_cast<size_t>(rank)].grad()), 1e-12) << name;
    if (with_residual)
      EXPECT_LT(relative_error(residual.grad(), ref_residual.grad().narrow(0, rank * rows, rows)), 1e-12) << name;
    auto gamma_grad = gamma.grad().clone();  // this rank's rows' share: summed over the ranks
    all_reduce_now(*world, gamma_grad);
    EXPECT_LT(relative_error(gamma_grad, ref_gamma.grad()), 1e-12) << name;
  }
}

// Two halves of 10 and 7 rows through two layers' worth of boundaries, interleaved as TokenWeave's
// schedule runs them (one half's boundary on the worker while the other half computes): values and
// gradients are bitwise those of the synchronous boundaries run one after another.
TEST_F(TensorParallel, AsyncReduceAddNormIsBitwiseTheSynchronousOne) {
  const int64_t d = 6;
  const double eps = 1e-5;
  const auto mix = random_of(20 + rank, {d, d});  // this rank's "layer": partial sums of its rows
  std::unique_ptr<Communicator> weave = world->split(0, rank, "tp_weave");
  BoundaryWorker worker;
  struct Grads {
    torch::Tensor loss, a, b, gamma;
  };
  const auto run = [&](bool async) {
    const auto a = random_of(30 + rank, {10, d}).requires_grad_(), b = random_of(40 + rank, {7, d}).requires_grad_();
    const auto gamma = (random_of(6, {d}) + 1).requires_grad_();
    AsyncBoundaries boundaries(*weave, worker, 6);
    const auto boundary = [&](const torch::Tensor& partial, const torch::Tensor& residual) {
      if (!async) return PendingNorm{reduce_add_norm(partial, residual, gamma, eps, *world), {}};
      return boundaries.start(partial, residual, gamma, eps);
    };
    const auto get = [&](const PendingNorm& p) { return async ? p.wait() : p.out; };
    PendingNorm pa = boundary(a, {}), pb = boundary(b, {});
    ReducedNorm ra = get(pa), rb;
    for (int layer = 0; layer < 2; ++layer) {
      pa = boundary(torch::matmul(torch::tanh(ra.normed), mix), ra.residual);
      rb = get(pb);
      pb = boundary(torch::matmul(torch::tanh(rb.normed), mix), rb.residual);
      ra = get(pa);
    }
    rb = get(pb);
    auto loss = (ra.normed * ra.normed).sum() + rb.normed.sum() * 0.5 + (ra.residual * 3).sum();
    loss.backward();
    return Grads{loss.detach(), a.grad(), b.grad(), gamma.grad()};
  };
  const Grads sync = run(false), async = run(true);
  EXPECT_TRUE(torch::equal(sync.loss, async.loss));
  EXPECT_TRUE(torch::equal(sync.a, async.a));
  EXPECT_TRUE(torch::equal(sync.b, async.b));
  EXPECT_TRUE(torch::equal(sync.gamma, async.gamma));
  EXPECT_GT(sync.a.abs().sum().item<double>(), 0) << "the gradient reaches the first boundary's input";
}

// A vocabulary of 11 rows split over the ranks (unevenly for 2, 3 and 4): the embeddings' partial
// sums add up to the embedding, and the loss and its gradients are those of the whole head.
TEST_F(TensorParallel, VocabParallelEmbeddingAndLossMatchTheWholeVocabulary) {
  const int64_t vocab = 11, d = 5, n = 9;
  const auto embedding = random_of(1, {vocab, d}), head = random_of(2, {vocab, d});
  torch::manual_seed(3);
  const auto tokens = torch::randint(vocab, {n}, torch::kInt64);
  auto labels = torch::randint(vocab, {n}, torch::kInt64);
  labels[2] = -1;
  const TensorShard shard = split_evenly(0, vocab, size, rank);

  auto partial = vocab_parallel_embedding(tokens, embedding.narrow(0, shard.begin, shard.size), shard);
  all_reduce_now(*world, partial);
  EXPECT_LT(relative_error(partial, torch::embedding(embedding, tokens)), 1e-15);

  const auto hidden_ref = random_of(4, {n, d}).requires_grad_(), head_ref = head.clone().requires_grad_();
  const auto want = summed_loss(torch::matmul(hidden_ref, head_ref.t()), labels);
  want.backward();
  const auto hidden = random_of(4, {n, d}).requires_grad_();
  const auto mine = head.narrow(0, shard.begin, shard.size).clone().requires_grad_();
  const auto got = vocab_parallel_loss(hidden, mine, labels, shard, *world);
  got.backward();
  EXPECT_LT(relative_error(got, want), 1e-13);
  EXPECT_LT(relative_error(mine.grad(), head_ref.grad().narrow(0, shard.begin, shard.size)), 1e-12);
  auto hidden_grad = hidden.grad().clone();  // each rank's part of it: their sum is the gradient
  all_reduce_now(*world, hidden_grad);
  EXPECT_LT(relative_error(hidden_grad, hidden_ref.grad()), 1e-12);

  const auto logits = torch::matmul(hidden, mine.t());
  EXPECT_LT(relative_error(gather_vocab(logits, shard, *world), torch::matmul(hidden, head.t())), 1e-15);
}

}  // namespace
}  // namespace loom
