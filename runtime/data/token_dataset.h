// Loom's dataset: one HDF5 file of tokenized documents.
//   /tokens        int32 [n_tokens]      every document's tokens, back to back
//   /doc_offsets   int64 [n_docs + 1]    document d is tokens[doc_offsets[d] : doc_offsets[d+1]]
//   (task data only: the answer spans, any number per document)
//   /answer_offsets int64 [n_docs + 1]   document d's spans are entries answer_offsets[d] .. answer_offsets[d+1]
//   /answer_start  int64 [n_spans]       where an answer starts inside its document
//   /answer_len    int64 [n_spans]       its length
//   /evidence_start int64 [n_spans]      where the document states what the answer needs
//   attributes: format = "loom-tokens", version, tokenizer, vocab_size, task
// Version 1 files (one span per document, no /answer_offsets, start -1 for none) are still read.
//
// A dataset read from a file keeps only its index in memory (offsets, answer spans, attributes):
// the tokens stay in the file and are read a document at a time, so a rank's memory does not grow
// with the dataset.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom {

class TokenFile;  // the open /tokens of a dataset file (token_dataset.cpp)

// One answer inside a document: tokens [start, start + length) answer a question, and `evidence`
// is where the document stated it earlier.
struct AnswerSpan {
  int64_t start = 0, length = 0, evidence = 0;
  bool operator==(const AnswerSpan& o) const { return start == o.start && length == o.length && evidence == o.evidence; }
};

struct TokenDataset {
  std::vector<int32_t> tokens;            // in memory: a dataset being built (empty when read from a file)
  std::shared_ptr<const TokenFile> file;  // read_dataset's: where the tokens are read from
  std::vector<int64_t> doc_offsets{0};
  std::vector<AnswerSpan> answers;      // every document's answer spans, document after document
  std::vector<int64_t> answer_offsets;  // task data: document d's spans are answers[answer_offsets[d] : answer_offsets[d+1]]
  int64_t vocab_size = 259;
  std::string tokenizer = "byte";
  std::string task = "text";

  int64_t num_docs() const { return static_cast<int64_t>(doc_offsets.size()) - 1; }
  int64_t num_tokens() const { return doc_offsets.back(); }
  // Tokens [begin, begin + count) of document d (count < 0: to its end), from memory or the file;
  // a token outside the vocabulary is an error naming the file and where it sits.
  std::vector<int32_t> document(int64_t d, int64_t begin = 0, int64_t count = -1) const;
  int64_t doc_length(int64_t d) const { return doc_offsets[d + 1] - doc_offsets[d]; }
  bool has_answers() const { return !answer_offsets.empty(); }
  std::vector<AnswerSpan> answers_of(int64_t d) const;  // empty when the document has none
  void add_document(const std::vector<int32_t>& doc, const std::vector<AnswerSpan>& spans = {});
};

constexpr int64_t kDatasetVersion = 2;

// Writes a dataset file a block of tokens at a time: the tokens go to the file as they come (a
// growing, chunked /tokens), so only the caller's index is ever in memory. The file is written
// under a temporary name and renamed by finish(), so an interrupted write never leaves a half file
// behind (a writer destroyed unfinished removes it).
class DatasetWriter {
 public:
  DatasetWriter(const std::string& path, int64_t vocab_size);
  ~DatasetWriter();
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  // Appends tokens, each inside the vocabulary.
  void write(const int32_t* tokens, size_t count);
  int64_t tokens_written() const { return written_; }
  // `index` describes the tokens written (its own `tokens` empty): its index and attributes are
  // checked and written, and the file is renamed into place.
  void finish(const TokenDataset& index);

 private:
  std::string path_, tmp_;
  int64_t vocab_size_, written_ = 0;
  int64_t file_ = -1, tokens_ = -1;  // HDF5 handles
};

// A dataset built in memory, written through DatasetWriter.
void write_dataset(const std::string& path, const TokenDataset& data);

// Opens the file and reads and validates its index; the tokens are read as document() asks. Any
// problem is a loom::Error naming the file and what is wrong.
TokenDataset read_dataset(const std::string& path);

// The HDF5 library's version, "major.minor.release".
std::string hdf5_library_version();

}  // namespace loom
