// Turns text files (or folders of them, recursively) into a dataset: one document per file,
// framed by BOS and EOS. Files that are not text (a NUL byte in the first 4 KiB) are skipped.
#pragma once
#include <string>
#include <vector>

#include "runtime/data/token_dataset.h"

namespace loom {

TokenDataset make_text_dataset(const std::vector<std::string>& inputs);

}  // namespace loom
