#include "runtime/data/batch_loader.h"

#include <numeric>

#include "runtime/core/error.h"
#include "runtime/data/tokenizer.h"

namespace loom {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

double unit_hash(uint64_t x) { return static_cast<double>(splitmix64(x) >> 11) / static_cast<double>(1ull << 53); }

}  // namespace

std::vector<int64_t> split_documents(const TokenDataset& data, Split split, double val_fraction) {
  std::vector<int64_t> docs;
  for (int64_t d = 0; d < data.num_docs(); ++d) {
    if (data.doc_length(d) < 2) continue;  // nothing to predict
    const bool validation = unit_hash(static_cast<uint64_t>(d)) < val_fraction;
    if (validation == (split == Split::kValidation)) docs.push_back(d);
  }
  return docs;
}

std::vector<int64_t> document_labels(const TokenDataset& data, int64_t d, const std::vector<int32_t>& tokens,
                                     const std::string& loss_on) {
  const auto length = static_cast<int64_t>(tokens.size());
  std::vector<int64_t> labels(length, -1);
  // label[i] = token[i + 1] for every i + 1 inside [lo, hi) of a labelled range.
  const auto label = [&](int64_t lo, int64_t hi) {
    for (int64_t j = std::max<int64_t>(lo, 1); j < std::min(hi, length); ++j) labels[j - 1] = tokens[j];
  };
  if (loss_on != "answers") {
    label(1, length);
    return labels;
  }
  check(data.has_answers(), "data.loss_on: answers needs a dataset with answer spans (e.g. `loom data synth`)");
  for (const AnswerSpan& a : data.answers_of(d)) label(a.start, a.start + a.length);
  return labels;
}

BatchLoader::BatchLoader(const TokenDataset& data, std::vector<int64_t> docs, int64_t seq_len,
                         std::string loss_on, uint64_t seed)
    : data_(data), docs_(std::move(docs)), seq_len_(seq_len), loss_on_(std::move(loss_on)), seed_(seed) {
  check(!docs_.empty(), "the dataset split has no documents with at least two tokens");
}

void BatchLoader::set_cursor(const LoaderCursor& c) {
  check(c.epoch >= 0 && c.index >= 0 && c.index <= static_cast<int64_t>(docs_.size()),
        "data cursor (epoch " + std::to_string(c.epoch) + ", index " + std::to_string(c.index) +
            ") does not fit this dataset of " + std::to_string(docs_.size()) + " documents; was the data file changed?");
  cursor_ = c;
}

// A Fisher-Yates shuffle driven by splitmix64 of (seed, epoch, i): the same order on every platform
// and standard library, and reproducible from the cursor alone.
const std::vector<int64_t>& BatchLoader::order() {
  if (order_epoch_ != cursor_.epoch) {
    order_ = docs_;
    const uint64_t base = splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(cursor_.epoch)));
    for (int64_t i = static_cast<int64_t>(order_.size()) - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(splitmix64(base + static_cast<uint64_t>(i)) % static_cast<uint64_t>(i + 1));
      std::swap(order_[i], order_[j]);
    }
    order_epoch_ = cursor_.epoch;
  }
  return order_;
}

void BatchLoader::append(PackedBatch& b, int64_t doc, int64_t length) const {
  const int64_t local_id = static_cast<int64_t>(b.source_docs.size());
  const std::vector<int32_t> tokens = data_.document(doc, 0, length);
  std::vector<int64_t> labels = document_labels(data_, doc, tokens, loss_on_);
  labels[length - 1] = -1;  // a cut document has no next token inside the batch
  for (int64_t i = 0; i < length; ++i) {
    b.tokens.push_back(tokens[i]);
    b.positions.push_back(i);
    b.doc_ids.push_back(local_id);
    b.labels.push_back(labels[i]);
    b.label_count += labels[i] >= 0;
  }
  b.source_docs.push_back(doc);
}

PackedBatch BatchLoader::next() { return take(true); }

void BatchLoader::skip() { take(false); }

PackedBatch BatchLoader::take(bool materialize) {
  PackedBatch b;
  int64_t used = 0;
  // A batch never spans two epochs, so one pass over a split (evaluation) ends exactly.
  if (cursor_.index == static_cast<int64_t>(docs_.size())) cursor_ = {cursor_.epoch + 1, 0};
  while (cursor_.index < static_cast<int64_t>(docs_.size())) {
    const int64_t doc = order()[cursor_.index];
    const int64_t room = seq_len_ - used;
    const int64_t length = data_.doc_length(doc);
    if (length > room && used > 0) break;
    b.cut_docs += length > room;
    if (materialize) append(b, doc, std::min(length, room));
    used += std::min(length, room);
    ++cursor_.index;
    if (used == seq_len_) break;
  }
  if (!materialize) return b;
  // Padding is masked and carries no loss, so its id only has to exist in the vocabulary.
  const int64_t pad_id = data_.vocab_size > tokenizer::kPad ? tokenizer::kPad : 0;
  const auto pad = static_cast<size_t>(seq_len_) - b.tokens.size();
  b.tokens.insert(b.tokens.end(), pad, pad_id);
  b.positions.insert(b.positions.end(), pad, 0);
  b.doc_ids.insert(b.doc_ids.end(), pad, -1);
  b.labels.insert(b.labels.end(), pad, -1);
  return b;
}

PackedTensors to_tensors(const PackedBatch& b) {
  const auto as_tensor = [](const std::vector<int64_t>& values) { return torch::tensor(values, torch::dtype(torch::kInt64)); };
  return {as_tensor(b.tokens), as_tensor(b.positions), as_tensor(b.doc_ids), as_tensor(b.labels), b.label_count};
}

}  // namespace loom
