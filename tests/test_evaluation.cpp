// Evaluation: what it scores, and that it says what it could not score.
#include <cmath>
#include <numeric>

#include "runtime/data/token_dataset.h"
#include "runtime/train/evaluation.h"
#include "tests/test_util.h"

namespace loom {
namespace {

// Passkey documents end with their question and answer, so a document cut at the sequence length
// loses its answer: `answered` falls by exactly the documents cut, and the table has to say why.
TEST(Evaluation, DocumentsLongerThanTheSequenceAreCountedAsCut) {
  test::ScratchDir dir;
  const TokenDataset data = read_dataset(test::write_tiny_passkey(dir, 40));
  Llama model = test::float64_model(test::tiny_config("", "").model);
  std::vector<int64_t> docs(static_cast<size_t>(data.num_docs()));
  std::iota(docs.begin(), docs.end(), 0);
  const int64_t seq_len = 256;
  int64_t longer = 0;
  for (int64_t d : docs) longer += data.doc_length(d) > seq_len;
  ASSERT_GT(longer, 0);
  ASSERT_LT(longer, data.num_docs());

  const EvalResult cut = evaluate(model, data, docs, seq_len, data.num_docs());
  EXPECT_EQ(cut.cut, longer);
  EXPECT_EQ(cut.answered, cut.docs - longer);
  EXPECT_EQ(cut.to_json()["docs_cut"].get<int64_t>(), longer);
  const std::string said = std::to_string(longer) + " of them are longer than 256 tokens";
  EXPECT_NE(cut.table().find(said), std::string::npos) << cut.table();

  const EvalResult whole = evaluate(model, data, docs, 512, data.num_docs());
  EXPECT_EQ(whole.cut, 0);
  EXPECT_EQ(whole.answered, whole.docs);
  EXPECT_EQ(whole.table().find("longer than"), std::string::npos) << whole.table();
}

// A model with every weight zero predicts token 0 everywhere (all logits equal, argmax takes the
// first), so answers of zeros are right and any answer with another token is wrong: an answer
// counts only when every one of its tokens is predicted, and each is bucketed by its distance.
TEST(Evaluation, AnAnswerCountsOnlyWhenEveryTokenIsRight) {
  const ModelConfig config = test::tiny_config("", "").model;
  Llama model = test::float64_model(config);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.zero_();
  }
  TokenDataset data;
  data.add_document({1, 0, 0, 9, 0, 5, 9, 5, 0, 9, 0, 0}, {{1, 2, 0}, {4, 2, 1}, {7, 2, 1}, {10, 2, 1}});
  const EvalResult r = evaluate(model, data, {0}, 64, 1, "answers");
  EXPECT_EQ(r.answered, 4);
  EXPECT_EQ(r.correct, 2) << "[0 0] twice right; [0 5] and [5 0] wrong";
  ASSERT_EQ(r.by_distance.size(), 4u) << "distances 1, 3, 6 and 9 fall in 1-2, 2-4, 4-8 and 8-16";
  EXPECT_EQ(r.by_distance[0].label, "1-2");
  EXPECT_EQ(r.by_distance[0].correct, 1);
  EXPECT_EQ(r.by_distance.back().label, "8-16");
  EXPECT_EQ(r.by_distance.back().correct, 1);
  EXPECT_NEAR(r.loss, std::log(static_cast<double>(config.vocab_size)), 1e-12)
      << "uniform logits: the loss over the 8 answer tokens is log(vocab)";
  EXPECT_EQ(r.tokens, 8);
}

}  // namespace
}  // namespace loom
