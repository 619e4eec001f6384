// Turns text files (or folders of them, recursively) into a dataset: one document per file,
// framed by BOS and EOS. Files that are not text (a NUL byte in the first 4 KiB) are skipped.
// Streamed: each file is read and tokenized a block at a time and its tokens written out as they
// come, so memory does not grow with the input (a 10 GB corpus needs its index, not its bytes).
#pragma once
#include <string>
#include <vector>

#include "runtime/data/token_dataset.h"

namespace loom {

// Writes the dataset of `inputs` to `out` and returns its index (documents and their offsets).
TokenDataset prepare_text_dataset(const std::vector<std::string>& inputs, const std::string& out);

}  // namespace loom
