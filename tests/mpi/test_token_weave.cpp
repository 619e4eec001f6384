// TokenWeave's interleaved layers on a tensor-parallel model, float64: the hidden states and every
// parameter's gradient are the unsplit single-process model's, for tp = 2, 3 and 4 (the ranks of
// the job) and a sequence of two documents whose cut falls inside the second.
#include <gtest/gtest.h>

#include "parallel/comm/mpi_communicator.h"
#include "runtime/model/parallelize.h"
#include "tests/relative_error.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::relative_error;

ModelConfig splittable_model() {
  ModelConfig c = test::tiny_model();
  c.d_model = 24;
  c.n_heads = c.n_kv_heads = 12;  // 2, 3 and 4 ranks divide the heads and the MLP
  c.d_ff = 48;
  return c;
}

SequenceShard two_documents(int64_t vocab) {
  torch::manual_seed(5);
  const auto tokens = torch::randint(vocab, {29}, torch::kInt64);
  const auto positions = torch::cat({torch::arange(11, torch::kInt64), torch::arange(18, torch::kInt64)});
  const auto docs = torch::cat({torch::zeros({11}, torch::kInt64), torch::ones({18}, torch::kInt64)});
  return whole_sequence({tokens, positions, docs, {}, 0});
}

TEST(TokenWeave, InterleavedHalvesAreTheUnsplitModel) {
  std::unique_ptr<Communicator> tp = mpi_world(60);
  std::unique_ptr<Communicator> weave = tp->split(0, tp->rank(), "tp_weave");
  const int size = tp->size();
  const ModelConfig c = splittable_model();
  const SequenceShard input = two_documents(c.vocab_size);
  const auto weight = torch::randn({29, c.d_model}, torch::kFloat64);  // the loss: sum(weight * hidden)

  Llama whole = test::float64_model(c);
  const auto want = whole->hidden(input);
  (weight * want).sum().backward();

  for (const char* checkpoint : {"none", "selective"}) {
    SCOPED_TRACE(std::string("activation checkpointing: ") + checkpoint);
    Llama split = test::float64_model(c);
    BoundaryWorker worker;
    ParallelPlan plan;
    plan.tp = tp.get();
    plan.activation_checkpoint = checkpoint;
    plan.token_weave = {weave.get(), &worker, 0};
    const TensorLayout layout = parallelize(split, plan);
    const auto got = token_weave_hidden(split->woven(), input, plan.token_weave);
    ASSERT_TRUE(got.defined()) << "the sequence is split";
    // Each rank holds every row of the hidden states: its loss is its share of theirs.
    ((weight * got).sum() / size).backward();

    EXPECT_LT(relative_error(got, want), 1e-12);
    const auto whole_params = whole->named_parameters();
    for (const auto& p : split->named_parameters()) {
      const auto& want_grad = whole_params[p.key()].grad();
      if (!want_grad.defined()) {  // the LM head: not on the way to the hidden states
        EXPECT_FALSE(p.value().grad().defined()) << p.key();
        continue;
      }
      const TensorShard shard = shard_of(layout, p.key());
      auto grad = p.value().grad().clone();
      if (!shard.split()) all_reduce_now(*tp, grad);  // each rank's share of a norm's gradient
      EXPECT_LT(relative_error(grad, take_shard(want_grad, shard)), 1e-11) << p.key();
    }
  }
}

}  // namespace
}  // namespace loom
