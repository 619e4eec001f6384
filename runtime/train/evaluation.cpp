#include "runtime/train/evaluation.h"

#include <cmath>
#include <map>
#include <sstream>

#include "runtime/data/batch_loader.h"
#include "runtime/model/lm_loss.h"

namespace loom {
namespace {

struct Tally {
  std::map<int64_t, AccuracyBucket> depth, length;
};

void count(std::map<int64_t, AccuracyBucket>& buckets, int64_t key, const std::string& label, bool correct) {
  auto& b = buckets[key];
  b.label = label;
  b.total += 1;
  b.correct += correct;
}

// Greedy decoding of the answer is correct exactly when the argmax at every answer position is the
// right token given the right prefix: if all are right, greedy decoding reproduces the prefix it was
// scored with; at the first wrong one, both fail. So one teacher-forced forward scores the answer.
void score_answers(const TokenDataset& data, const PackedBatch& batch, const torch::Tensor& predictions, Tally& tally,
                   EvalResult& result) {
  const auto pred = predictions.accessor<int64_t, 1>();
  int64_t slot = 0;
  for (size_t j = 0; j < batch.source_docs.size(); ++j) {
    const int64_t doc = batch.source_docs[j];
    int64_t packed_len = 0;
    while (slot + packed_len < static_cast<int64_t>(batch.doc_ids.size()) &&
           batch.doc_ids[slot + packed_len] == static_cast<int64_t>(j))
      ++packed_len;
    const int64_t a = data.answer_start[doc], len = data.answer_len[doc];
    if (a > 0 && a + len <= packed_len) {
      bool correct = true;
      const std::vector<int32_t> answer = data.document(doc, a, len);
      for (int64_t t = 0; t < len; ++t) correct &= pred[slot + a - 1 + t] == answer[t];
      // Depth: where the key sits in the context that precedes the answer (0% = its start).
      const double depth = static_cast<double>(data.evidence_start[doc]) / static_cast<double>(a);
      const auto depth_bucket = std::min<int64_t>(4, static_cast<int64_t>(depth * 5));
      std::ostringstream depth_label;
      depth_label << depth_bucket * 20 << "-" << (depth_bucket + 1) * 20 << "%";
      const auto length_bucket = static_cast<int64_t>(std::floor(std::log2(static_cast<double>(data.doc_length(doc)))));
      count(tally.depth, depth_bucket, depth_label.str(), correct);
      count(tally.length, length_bucket, std::to_string(1LL << length_bucket) + "-" + std::to_string(2LL << length_bucket), correct);
      result.correct += correct;
      result.answered += 1;
    }
    slot += packed_len;
  }
}

std::vector<AccuracyBucket> values(const std::map<int64_t, AccuracyBucket>& buckets) {
  std::vector<AccuracyBucket> out;
  for (const auto& [key, b] : buckets) out.push_back(b);
  return out;
}

double percent(int64_t a, int64_t b) { return b ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0; }

}  // namespace

EvalResult evaluate(Llama& model, const TokenDataset& data, const std::vector<int64_t>& docs, int64_t seq_len,
                    int64_t max_docs) {
  torch::NoGradGuard no_grad;
  model->eval();
  const std::vector<int64_t> subset(docs.begin(), docs.begin() + std::min<int64_t>(max_docs, docs.size()));
  BatchLoader loader(data, subset, seq_len, "all", /*seed=*/0);
  EvalResult result;
  result.has_answers = data.has_answers();
  result.docs = static_cast<int64_t>(subset.size());
  result.seq_len = seq_len;
  Tally tally;
  double loss_sum = 0;
  while (loader.cursor().index < static_cast<int64_t>(subset.size())) {
    const PackedBatch batch = loader.next();
    const PackedTensors t = on_device(to_tensors(batch), model->device());
    const auto logits = model->forward(t.tokens, t.positions, t.doc_ids);
    loss_sum += summed_loss(logits, t.labels).item<double>();
    result.tokens += t.label_count;
    result.cut += batch.cut_docs;
    if (result.has_answers) score_answers(data, batch, logits.argmax(-1).cpu(), tally, result);
  }
  model->train();
  result.loss = loss_sum / static_cast<double>(std::max<int64_t>(1, result.tokens));
  result.perplexity = std::exp(result.loss);
  result.by_depth = values(tally.depth);
  result.by_length = values(tally.length);
  return result;
}

nlohmann::json EvalResult::to_json() const {
  nlohmann::json j = {{"loss", loss}, {"perplexity", perplexity}, {"tokens", tokens}, {"docs", docs}, {"docs_cut", cut}};
  if (!has_answers) return j;
  j["accuracy"] = percent(correct, answered) / 100.0;
  j["answered"] = answered;
  for (const auto* group : {&by_depth, &by_length}) {
    auto& out = j[group == &by_depth ? "accuracy_by_depth" : "accuracy_by_length"];
    for (const auto& b : *group) out[b.label] = {{"correct", b.correct}, {"total", b.total}};
  }
  return j;
}

std::string EvalResult::table() const {
  std::ostringstream s;
  char line[160];
  std::snprintf(line, sizeof line, "eval: loss %.4f | perplexity %.3f | %ld tokens in %ld documents\n", loss, perplexity,
                tokens, docs);
  s << line;
  if (cut > 0) {
    std::snprintf(line, sizeof line, "  %ld of them are longer than %ld tokens and were scored only up to there\n", cut,
                  seq_len);
    s << line;
  }
  if (!has_answers) return s.str();
  std::snprintf(line, sizeof line, "retrieval accuracy: %.1f%% (%ld/%ld)\n", percent(correct, answered), correct, answered);
  s << line;
  for (const auto* group : {&by_depth, &by_length}) {
    s << (group == &by_depth ? "  by depth of the key:\n" : "  by document length (tokens):\n");
    for (const auto& b : *group) {
      std::snprintf(line, sizeof line, "    %-14s %6.1f%%  (%ld/%ld)\n", b.label.c_str(), percent(b.correct, b.total),
                    b.correct, b.total);
      s << line;
    }
  }
  return s.str();
}

}  // namespace loom
