// Evaluation on held-out documents: loss and perplexity over every labelled token, and for task
// data with answer spans (passkey, recall) the retrieval accuracy by evidence depth, by the distance
// between the evidence and the answer, and by document length.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/data/token_dataset.h"
#include "runtime/model/llama.h"

namespace loom {

struct AccuracyBucket {
  std::string label;
  int64_t correct = 0, total = 0;
};

struct EvalResult {
  double loss = 0, perplexity = 0;
  int64_t tokens = 0, docs = 0;
  // Documents longer than the packed sequence are cut at it: their later tokens, and an answer
  // there, are not scored. Said in the table, so a low `answered` is not read as bad retrieval.
  int64_t cut = 0, seq_len = 0;
  bool has_answers = false;
  int64_t correct = 0, answered = 0;
  std::vector<AccuracyBucket> by_depth, by_distance, by_length;
  // The three tables by name ("depth", "distance", "length"), in that order.
  std::vector<std::pair<std::string, const std::vector<AccuracyBucket>*>> groups() const;

  nlohmann::json to_json() const;
  std::string table() const;  // for the terminal
};

// Evaluates up to `max_docs` documents of `docs`, packed `seq_len` tokens at a time; the loss is
// over the tokens `loss_on` labels (data.loss_on: "all" or "answers"), as in training.
EvalResult evaluate(Llama& model, const TokenDataset& data, const std::vector<int64_t>& docs, int64_t seq_len,
                    int64_t max_docs, const std::string& loss_on = "all");

}  // namespace loom
