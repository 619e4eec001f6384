// Synthetic passkey retrieval: filler text with a random key of digits hidden at a random depth, and a
// question at the end whose answer is the key. Document lengths follow a long-tailed distribution,
// so packed batches mix many short documents with a few long ones.
#pragma once
#include <cstdint>

#include "runtime/data/token_dataset.h"

namespace loom {

// How the key is stated and asked for.
//   prose:  "The pass key is 12345. Remember it. 12345 is the pass key." ... "What is the pass key? The pass key is "
//   marker: "#12345 " ... "?#" — a byte that occurs nowhere else marks both the key and the question,
//           the small-vocabulary variant: one-token matching suffices to find the key, so models
//           small enough for a CPU learn retrieval in minutes rather than hours.
enum class PasskeyStyle { kProse, kMarker };

struct PasskeyOptions {
  int64_t docs = 1000;
  int64_t min_len = 256;  // bytes per document, before BOS/EOS
  int64_t max_len = 4096;
  uint64_t seed = 1;
  PasskeyStyle style = PasskeyStyle::kProse;
  int64_t key_digits = 5;  // 1-9; the first is never 0
};

TokenDataset make_passkey_dataset(const PasskeyOptions& options);

}  // namespace loom
