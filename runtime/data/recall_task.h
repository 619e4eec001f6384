// Synthetic multi-query associative recall (MQAR; Arora et al. 2023, "Zoology", section 3): a
// document states key-value pairs, then filler, then asks for every key again in a shuffled order;
// each value after a repeated key is an answer. Every document carries `pairs` answers, so the
// signal is dense enough for a small model to learn retrieval in minutes, and the distance from a
// pair to its query spans the document, so accuracy by distance shows how far retrieval reaches.
//
//   <BOS>qd:83 mx:07 ab:51 ... The grass is green. Here we go. ... mx:07 ab:51 qd:83 ...<EOS>
//        `-- pairs ---------'  `-- filler -------------------'  `-- queries ---------'
//
// Byte-level text: keys are lowercase letters, values digits, and the filler holds neither ':' nor
// digits, so a key followed by ':' occurs only in its pair and its query.
#pragma once
#include <cstdint>

#include "runtime/data/token_dataset.h"

namespace loom {

struct RecallOptions {
  int64_t docs = 1000;
  int64_t min_len = 256;  // bytes per document, before BOS/EOS; lengths are uniform between the
  int64_t max_len = 2048; // bounds, so the filler (and the pair-to-query distance) is too
  int64_t pairs = 16;     // key-value pairs per document, each asked once
  int64_t key_len = 2;    // letters per key (distinct inside a document)
  int64_t value_len = 2;  // digits per value
  uint64_t seed = 1;
};

TokenDataset make_recall_dataset(const RecallOptions& options);

}  // namespace loom
