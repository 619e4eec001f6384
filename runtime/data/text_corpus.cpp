#include "runtime/data/text_corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/core/error.h"
#include "runtime/data/tokenizer.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

bool looks_like_text(const std::string& content) {
  return content.substr(0, 4096).find('\0') == std::string::npos;
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

TokenDataset make_text_dataset(const std::vector<std::string>& inputs) {
  TokenDataset data;
  for (const auto& file : list_files(inputs)) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string content = buffer.str();
    if (content.empty() || !looks_like_text(content)) continue;
    std::vector<int32_t> doc = {tokenizer::kBos};
    for (int32_t t : tokenizer::encode(content)) doc.push_back(t);
    doc.push_back(tokenizer::kEos);
    data.add_document(doc);
  }
  check(data.num_docs() > 0, "no text files found in the inputs");
  return data;
}

}  // namespace loom
