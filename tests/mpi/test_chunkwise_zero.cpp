// ZeRO stage 2 under chunk-wise backprop, float64, on the job's 2, 3 or 4 ranks: armed before every
// chunk's backward (as the trainer arms it), the reducer adds each chunk's reduced gradient into
// this rank's parts, so after the sweep they are the parts of the gradient summed over the ranks,
// and no parameter keeps a whole .grad.
#include <gtest/gtest.h>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/data/gradient_reducer.h"
#include "runtime/train/chunkwise/chunkwise_backprop.h"
#include "tests/relative_error.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::relative_error;

// One document of 40 random tokens, different on every rank.
PackedTensors document_of(int rank, int64_t vocab) {
  torch::manual_seed(31 + rank);
  const int64_t n = 40;
  return {torch::randint(vocab, {n}, torch::kInt64), torch::arange(n), torch::zeros({n}, torch::kInt64),
          torch::randint(vocab, {n}, torch::kInt64), n};
}

TEST(ChunkwiseZero, StageTwoArmedPerChunkKeepsPartsOfTheSummedGradientAndNoWholeOne) {
  std::unique_ptr<Communicator> world = mpi_world(60);
  const int rank = world->rank(), size = world->size();
  const ModelConfig c = test::tiny_model();
  const PackedTensors seq = document_of(rank, c.vocab_size);
  const double denominator = 40.0 * size;

  Llama reference = test::float64_model(c);
  (summed_loss(reference->forward(seq.tokens, seq.positions, seq.doc_ids), seq.labels) / denominator).backward();
  std::vector<torch::Tensor> summed;
  for (const auto& p : reference->parameters()) {
    summed.push_back(p.grad().clone());
    all_reduce_now(*world, summed.back());
  }

  Llama model = test::float64_model(c);
  GradientReducer reducer(model->parameters(), torch::kFloat64, *world, 2048, 2);
  ASSERT_GT(reducer.num_buckets(), 2);
  int armed = 0;
  const ChunkwiseResult r = chunkwise_backward(model, seq, 16, all_chunks(3), denominator, nullptr, [&] {
    reducer.arm();
    ++armed;
  });
  reducer.finish();
  EXPECT_EQ(armed, 3) << "armed before each chunk's backward";
  EXPECT_EQ(r.visited, 3);
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined()) << "a whole gradient was kept";
  for (int64_t b = 0; b < reducer.num_buckets(); ++b) {
    auto whole = torch::zeros({reducer.padded(b)}, torch::kFloat64);
    for (size_t k = 0; k < reducer.params(b).size(); ++k) {
      const torch::Tensor& g = summed[reducer.params(b)[k]];
      whole.narrow(0, reducer.offsets(b)[k], g.numel()).copy_(g.reshape(-1));
    }
    const int64_t part = reducer.padded(b) / size;
    EXPECT_LE(relative_error(reducer.part(b), whole.narrow(0, rank * part, part)), 1e-12) << "bucket " << b;
  }
}

}  // namespace
}  // namespace loom
