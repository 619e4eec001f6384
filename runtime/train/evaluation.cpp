#include "runtime/train/evaluation.h"

#include <cmath>
#include <map>
#include <sstream>

#include "runtime/data/batch_loader.h"
#include "runtime/model/lm_loss.h"

namespace loom {
namespace {

struct Tally {
  std::map<int64_t, AccuracyBucket> depth, distance, length;
};

void count(std::map<int64_t, AccuracyBucket>& buckets, int64_t key, const std::string& label, bool correct) {
  auto& b = buckets[key];
  b.label = label;
  b.total += 1;
  b.correct += correct;
}

// Powers of two: [2^k, 2^(k+1)).
void count_log2(std::map<int64_t, AccuracyBucket>& buckets, int64_t value, bool correct) {
  const auto k = static_cast<int64_t>(std::floor(std::log2(static_cast<double>(std::max<int64_t>(1, value)))));
  count(buckets, k, std::to_string(1LL << k) + "-" + std::to_string(2LL << k), correct);
}

// Depth: where the evidence sits in the context that precedes the answer (0% = its start).
void count_depth(std::map<int64_t, AccuracyBucket>& buckets, const AnswerSpan& a, bool correct) {
  const double depth = static_cast<double>(a.evidence) / static_cast<double>(a.start);
  const auto k = std::min<int64_t>(4, static_cast<int64_t>(depth * 5));
  count(buckets, k, std::to_string(k * 20) + "-" + std::to_string((k + 1) * 20) + "%", correct);
}

// Greedy decoding of the answer is correct exactly when the argmax at every answer position is the
// right token given the right prefix: if all are right, greedy decoding reproduces the prefix it was
// scored with; at the first wrong one, both fail. So one teacher-forced forward scores every answer.
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
    for (const AnswerSpan& a : data.answers_of(doc)) {
      if (a.start < 1 || a.start + a.length > packed_len) continue;  // cut off: not answered
      bool correct = true;
      const std::vector<int32_t> answer = data.document(doc, a.start, a.length);
      for (int64_t t = 0; t < a.length; ++t) correct &= pred[slot + a.start - 1 + t] == answer[t];
      count_depth(tally.depth, a, correct);
      count_log2(tally.distance, a.start - a.evidence, correct);
      count_log2(tally.length, data.doc_length(doc), correct);
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
                    int64_t max_docs, const std::string& loss_on) {
  torch::NoGradGuard no_grad;
  model->eval();
  const std::vector<int64_t> subset(docs.begin(), docs.begin() + std::min<int64_t>(max_docs, docs.size()));
  BatchLoader loader(data, subset, seq_len, loss_on, /*seed=*/0);
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
  result.by_distance = values(tally.distance);
  result.by_length = values(tally.length);
  return result;
}

std::vector<std::pair<std::string, const std::vector<AccuracyBucket>*>> EvalResult::groups() const {
  return {{"depth", &by_depth}, {"distance", &by_distance}, {"length", &by_length}};
}

nlohmann::json EvalResult::to_json() const {
  nlohmann::json j = {{"loss", loss}, {"perplexity", perplexity}, {"tokens", tokens}, {"docs", docs}, {"docs_cut", cut}};
  if (!has_answers) return j;
  j["accuracy"] = percent(correct, answered) / 100.0;
  j["answered"] = answered;
  for (const auto& [name, group] : groups()) {
    auto& out = j["accuracy_by_" + name];
    for (const auto& b : *group) out[b.label] = {{"correct", b.correct}, {"total", b.total}};
  }
  return j;
}

std::string EvalResult::table() const {
  std::ostringstream s;
  char line[160];
  std::snprintf(line, sizeof line, "eval: loss %.4f | perplexity %.3f | %ld scored tokens in %ld documents\n", loss, perplexity,
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
  const std::map<std::string, std::string> heading = {{"depth", "by depth of the evidence"},
                                                      {"distance", "by distance from the evidence (tokens)"},
                                                      {"length", "by document length (tokens)"}};
  for (const auto& [name, group] : groups()) {
    s << "  " << heading.at(name) << ":\n";
    for (const auto& b : *group) {
      std::snprintf(line, sizeof line, "    %-14s %6.1f%%  (%ld/%ld)\n", b.label.c_str(), percent(b.correct, b.total),
                    b.correct, b.total);
      s << line;
    }
  }
  return s.str();
}

}  // namespace loom
