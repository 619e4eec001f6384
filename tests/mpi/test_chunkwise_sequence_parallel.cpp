// SeCO and SpaCO over a sequence-parallel group, float64, on the job's 2, 3 or 4 ranks: each rank's
// gradient and loss are its share, and their sums over the ranks are the single-process ones (SeCO:
// full backprop's; SpaCO: single-process SpaCO's for the same chunks). One packed sequence of three
// documents whose boundaries fall inside chunks, chunks that do not divide into 2 x ranks rows (so
// shards are padded) and a short last chunk.
#include <gtest/gtest.h>

#include "parallel/comm/mpi_communicator.h"
#include "runtime/train/chunkwise/chunkwise_backprop.h"
#include "tests/relative_error.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::relative_error;

PackedTensors three_documents(int64_t vocab) {
  torch::manual_seed(13);
  const std::vector<int64_t> lengths{23, 30, 18};
  std::vector<torch::Tensor> pos, doc, labels;
  const auto tokens = torch::randint(vocab, {71}, torch::kInt64);
  int64_t start = 0;
  for (size_t d = 0; d < lengths.size(); ++d) {
    const int64_t n = lengths[d];
    pos.push_back(torch::arange(n));
    doc.push_back(torch::full({n}, static_cast<int64_t>(d)));
    labels.push_back(torch::cat({tokens.narrow(0, start + 1, n - 1), torch::full({1}, int64_t{-1})}));
    start += n;
  }
  const auto l = torch::cat(labels);
  return {tokens, torch::cat(pos), torch::cat(doc), l, (l >= 0).sum().item<int64_t>()};
}

struct Result {
  double loss = 0;
  std::vector<torch::Tensor> grads;
};

// Gradients and loss of `run` on a fresh copy of the model (the same weights on every rank).
template <class Run>
Result measure(const ModelConfig& c, Run run) {
  Llama model = test::float64_model(c);
  Result r;
  r.loss = run(model);
  for (const auto& p : model->parameters()) r.grads.push_back(p.grad().defined() ? p.grad() : torch::zeros_like(p));
  return r;
}

TEST(ChunkwiseSequenceParallel, SumsOverTheRanksAreTheSingleProcessGradients) {
  std::unique_ptr<Communicator> sp = mpi_world(60);
  const ModelConfig c = test::tiny_model();
  const PackedTensors seq = three_documents(c.vocab_size);
  const double denominator = static_cast<double>(seq.label_count);
  const int64_t chunk = 16, chunks = chunk_count(71, chunk);
  ChunkSelection sampled = spaco_weights(SpacoConfig{}, chunks);
  sampled.keep = {true, false, true, true, false};  // the last chunk unvisited: its loss from the first pass
  ASSERT_EQ(static_cast<int64_t>(sampled.keep.size()), chunks);

  const Result full = measure(c, [&](Llama& m) {
    const auto loss = summed_loss(m->forward(seq.tokens, seq.positions, seq.doc_ids), seq.labels);
    (loss / denominator).backward();
    return loss.item<double>();
  });
  const Result spaco_alone =
      measure(c, [&](Llama& m) { return chunkwise_backward(m, seq, chunk, sampled, denominator).loss; });

  for (const auto& [name, selection, want] :
       {std::tuple{"seco", all_chunks(chunks), full}, std::tuple{"spaco", sampled, spaco_alone}}) {
    SCOPED_TRACE(name);
    int64_t tokens = 0;
    Result got = measure(c, [&](Llama& m) {
      const ChunkwiseResult r = chunkwise_backward(m, seq, chunk, selection, denominator, sp.get());
      tokens = r.tokens;
      return r.loss;
    });
    // Each rank's share is a part, not the whole: no rank computes every row.
    EXPECT_GT(relative_error(got.grads[0], want.grads[0]), 1e-3) << "rank " << sp->rank();
    auto sums = torch::tensor({got.loss, static_cast<double>(tokens)}, torch::kFloat64);
    all_reduce_now(*sp, sums);
    EXPECT_LE(std::abs(sums[0].item<double>() - want.loss), 1e-12 * want.loss);
    EXPECT_EQ(sums[1].item<double>(), 71.0) << "every real token computed once";
    for (size_t i = 0; i < got.grads.size(); ++i) {
      all_reduce_now(*sp, got.grads[i]);
      EXPECT_LE(relative_error(got.grads[i], want.grads[i]), 1e-10) << "parameter " << i;
    }
  }
}

}  // namespace
}  // namespace loom
