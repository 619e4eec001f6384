// loom data synth | prepare | inspect
#include <cmath>
#include <cstdio>
#include <map>

#include "launch/commands.h"
#include "runtime/data/copy_task.h"
#include "runtime/data/passkey_task.h"
#include "runtime/data/recall_task.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/token_dataset.h"

namespace loom {
namespace {

void print_written(const std::string& path, const TokenDataset& d) {
  std::printf("wrote %s: %ld documents, %ld tokens\n", path.c_str(), d.num_docs(), d.num_tokens());
}

}  // namespace

int run_data_synth(const SynthArgs& a) {
  const auto style = a.style == "marker" ? PasskeyStyle::kMarker : PasskeyStyle::kProse;
  const TokenDataset d =
      a.task == "recall" ? make_recall_dataset({a.docs, a.min_len, a.max_len, a.pairs, a.key_len, a.value_len, a.seed})
      : a.task == "copy" ? make_copy_dataset({a.docs, a.min_len, a.max_len, a.seed})
                         : make_passkey_dataset({a.docs, a.min_len, a.max_len, a.seed, style, a.key_digits});
  write_dataset(a.out, d);
  print_written(a.out, d);
  return 0;
}

int run_data_prepare(const std::vector<std::string>& inputs, const std::string& out) {
  print_written(out, prepare_text_dataset(inputs, out));
  return 0;
}

int run_data_inspect(const std::string& path) {
  const TokenDataset d = read_dataset(path);
  std::printf("%s: task %s, tokenizer %s, vocab %ld\n", path.c_str(), d.task.c_str(), d.tokenizer.c_str(), d.vocab_size);
  std::printf("%ld documents, %ld tokens, %zu answer spans\n", d.num_docs(), d.num_tokens(), d.answers.size());
  std::map<int, int64_t> histogram;
  int64_t longest = 0;
  for (int64_t i = 0; i < d.num_docs(); ++i) {
    const int64_t len = d.doc_length(i);
    longest = std::max(longest, len);
    histogram[len > 0 ? static_cast<int>(std::log2(static_cast<double>(len))) : 0] += 1;
  }
  std::printf("document length (tokens), longest %ld:\n", longest);
  for (const auto& [bucket, n] : histogram) {
    std::printf("  %8lld - %-8lld %7ld  %s\n", 1LL << bucket, (2LL << bucket) - 1, n,
                std::string(static_cast<size_t>(std::ceil(50.0 * n / d.num_docs())), '#').c_str());
  }
  return 0;
}

}  // namespace loom
