#include "runtime/data/text_corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "runtime/core/error.h"
#include "runtime/data/tokenizer.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

constexpr size_t kBlockBytes = 1 << 20;

// Whether the file reads as text: no NUL byte in its first 4 KiB (and not empty).
bool looks_like_text(std::ifstream& in) {
  std::string head(4096, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  in.clear();
  in.seekg(0);
  return !head.empty() && head.find('\0') == std::string::npos;
}

std::vector<fs::path> list_files(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const auto& input : inputs) {
    check(fs::exists(input), "input '" + input + "' does not exist");
    if (fs::is_directory(input)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::recursive_directory_iterator(input))
        if (e.is_regular_file()) found.push_back(e.path());
      std::sort(found.begin(), found.end());  // the same dataset whatever the directory order
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.emplace_back(input);
    }
  }
  return files;
}

}  // namespace

TokenDataset prepare_text_dataset(const std::vector<std::string>& inputs, const std::string& out) {
  TokenDataset index;
  DatasetWriter writer(out, index.vocab_size);
  std::string block(kBlockBytes, '\0');
  for (const auto& file : list_files(inputs)) {
    std::ifstream in(file, std::ios::binary);
    check(in.good(), "cannot read '" + file.string() + "'");
    if (!looks_like_text(in)) continue;
    writer.write(&tokenizer::kBos, 1);
    while (in) {  // byte-level tokens: a block's tokens do not depend on the blocks around it
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      const std::vector<int32_t> tokens = tokenizer::encode(block.substr(0, static_cast<size_t>(in.gcount())));
      writer.write(tokens.data(), tokens.size());
    }
    writer.write(&tokenizer::kEos, 1);
    index.doc_offsets.push_back(writer.tokens_written());
  }
  check(index.num_docs() > 0, "no text files found in the inputs");
  writer.finish(index);
  return index;
}

}  // namespace loom
