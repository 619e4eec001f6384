// Evaluation: what it scores, and that it says what it could not score.
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

}  // namespace
}  // namespace loom
