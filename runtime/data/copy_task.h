// Synthetic copying: a random string, then the same string again. Predicting the second copy needs
// an induction head (attend to the token after an earlier copy of this one, copy it), the circuit
// that retrieval tasks such as recall and passkey are built on (Olsson et al. 2022, "In-context
// Learning and Induction Heads", where repeated random tokens are the test of such heads). On this
// task every token of the second copy is a training signal for that one circuit and no shortcut
// competes with it, so a small model forms it in a few hundred steps; as a first stage it lets
// recall be learnt where, trained from scratch, a model settles on guessing among the document's
// values (docs/benchmarks/retrieval.md).
//
//   <BOS>k3x0qa7m...k3x0qa7m...<EOS>     every byte of the second copy is an answer span of length 1
//
// Byte-level text of lowercase letters and digits, so the copied tokens include the values of recall
// and the digits of passkey.
#pragma once
#include <cstdint>

#include "runtime/data/token_dataset.h"

namespace loom {

struct CopyOptions {
  int64_t docs = 1000;
  int64_t min_len = 32;  // bytes per document (both copies), before BOS/EOS; log-uniform between the
  int64_t max_len = 96;  // bounds, rounded down to an even length
  uint64_t seed = 1;
};

TokenDataset make_copy_dataset(const CopyOptions& options);

}  // namespace loom
