// Synthetic multi-query associative recall (MQAR; Arora et al. 2023, "Zoology", section 3): a
// document states key-value pairs, then filler, then asks for every key again in a shuffled order;
// each value after a repeated key is an answer. Every document carries `pairs` answers, so the
// signal is dense, and the distance from a pair to its query spans the document, so accuracy by
// distance shows how far retrieval reaches. A small model learns it after the copy task
// (copy_task.h) has formed its induction head; from scratch it settles on guessing.
//
//   <BOS>q8 m0 a5 ... The grass is green. Here we go. ... m0 a5 q8 ...<EOS>
//        `-pairs-'    `-- filler -------------------'   `-queries-'
//
// Byte-level text: keys are lowercase letters, values digits, and the filler has no digits, so a
// key followed by a digit occurs only in its pair and its query. The value follows its key with
// nothing between: at the query the key itself is what the model matches against the pairs (an
// induction head: attend to the token after an earlier copy of this one). A separator such as
// "q:8" would make every query end in the same ':' and the match would need the token before it.
#pragma once
#include <cstdint>

#include "runtime/data/token_dataset.h"

namespace loom {

struct RecallOptions {
  int64_t docs = 1000;
  int64_t min_len = 256;  // bytes per document, before BOS/EOS; lengths are log-uniform between
  int64_t max_len = 2048; // the bounds, and so are the filler and the pair-to-query distances
  int64_t pairs = 8;      // key-value pairs per document, each asked once
  int64_t key_len = 1;    // letters per key (distinct inside a document)
  int64_t value_len = 1;  // digits per value
  uint64_t seed = 1;
};

TokenDataset make_recall_dataset(const RecallOptions& options);

}  // namespace loom
