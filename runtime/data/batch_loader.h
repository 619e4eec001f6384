// Packs whole documents into micro-batches of a fixed token budget and knows exactly where it is.
//
// Each micro-batch is one packed sequence of `seq_len` slots. Documents are taken in a seeded
// per-epoch order and added while they fit; a document longer than the whole budget is cut at the
// budget. Unused slots are padding (document id -1, no label). Positions restart at every document,
// so RoPE and the document mask never see one document from inside another.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/packed_tensors.h"
#include "runtime/data/token_dataset.h"

namespace loom {

struct PackedBatch {
  std::vector<int64_t> tokens;
  std::vector<int64_t> positions;  // position inside its document
  std::vector<int64_t> doc_ids;    // index of the document inside this batch; -1 for padding
  std::vector<int64_t> labels;     // next token, or -1 where no loss is taken
  std::vector<int64_t> source_docs;  // dataset index of each packed document
  int64_t cut_docs = 0;               // of them, longer than the whole batch and cut at its end
  int64_t label_count = 0;
};

// The batch as the tensors the model reads.
PackedTensors to_tensors(const PackedBatch& batch);

// Where the loader stands: the next document is order(epoch)[index].
struct LoaderCursor {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const LoaderCursor& o) const { return epoch == o.epoch && index == o.index; }
};

enum class Split { kTrain, kValidation };

// The documents of one split. The split depends only on the document index and the fraction, so
// every run on the same file holds out the same documents.
std::vector<int64_t> split_documents(const TokenDataset& data, Split split, double val_fraction);

// Labels of `tokens`, the first tokens (or all) of document `d`, restricted as `loss_on` says ("all"
// or "answers"); -1 marks no loss, and the last token has none.
std::vector<int64_t> document_labels(const TokenDataset& data, int64_t d, const std::vector<int32_t>& tokens,
                                     const std::string& loss_on);

class BatchLoader {
 public:
  BatchLoader(const TokenDataset& data, std::vector<int64_t> docs, int64_t seq_len,
              std::string loss_on, uint64_t seed);

  PackedBatch next();
  // Moves past the batch next() would return without building it: a data-parallel rank skips the
  // micro-batches other ranks take, so every rank's cursor stays the same global cursor.
  void skip();
  const LoaderCursor& cursor() const { return cursor_; }
  void set_cursor(const LoaderCursor& c);

 private:
  PackedBatch take(bool materialize);
  const std::vector<int64_t>& order();
  void append(PackedBatch& batch, int64_t doc, int64_t length) const;

  const TokenDataset& data_;
  std::vector<int64_t> docs_;
  int64_t seq_len_;
  std::string loss_on_;
  uint64_t seed_;
  LoaderCursor cursor_;
  std::vector<int64_t> order_;
  int64_t order_epoch_ = -1;
};

}  // namespace loom
