#include "runtime/data/token_dataset.h"

#include <hdf5.h>

#include <filesystem>

#include "runtime/core/error.h"

namespace loom {
namespace {

// HDF5 handles closed on scope exit, so every early error path releases what it opened.
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  Handle(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  ~Handle() {
    if (id >= 0) close(id);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  operator hid_t() const { return id; }
};

void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

template <class T>
hid_t native_type();
template <>
hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <>
hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }

template <class T>
void write_array(hid_t file, const char* name, const std::vector<T>& values) {
  const hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle set(H5Dcreate2(file, name, native_type<T>(), space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  check(set >= 0 && H5Dwrite(set, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) >= 0,
        std::string("HDF5: writing dataset ") + name + " failed");
}

void write_attr(hid_t file, const char* name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, value.size() + 1);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  check(attr >= 0 && H5Awrite(attr, type, value.c_str()) >= 0, std::string("HDF5: writing attribute ") + name + " failed");
}

void write_attr(hid_t file, const char* name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(file, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  check(attr >= 0 && H5Awrite(attr, H5T_NATIVE_INT64, &value) >= 0, std::string("HDF5: writing attribute ") + name + " failed");
}

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path), file_(-1, H5Fclose) {
    check(std::filesystem::exists(path), "dataset '" + path + "' does not exist; make one with `loom data prepare` or `loom data synth`");
    check(H5Fis_hdf5(path.c_str()) > 0, bad() + "not an HDF5 file");
    file_.id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    check(file_ >= 0, bad() + "HDF5 cannot open it (truncated or damaged)");
  }

  std::string bad() const { return "corrupt dataset '" + path_ + "': "; }

  bool has(const char* name) const { return H5Lexists(file_, name, H5P_DEFAULT) > 0; }

  template <class T>
  std::vector<T> array(const char* name) const {
    const int64_t n = length(name);
    Handle set(H5Dopen2(file_, name, H5P_DEFAULT), H5Dclose);
    return slice<T>(set, name, 0, n);
  }

  std::string text_attr(const char* name) const {
    Handle attr(H5Aopen(file_, name, H5P_DEFAULT), H5Aclose);
    check(attr >= 0, bad() + "missing attribute '" + name + "'");
    Handle type(H5Aget_type(attr), H5Tclose);
    check(H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type), bad() + "attribute '" + name + "' is not a string");
    std::string value(H5Tget_size(type), '\0');
    check(H5Aread(attr, type, value.data()) >= 0, bad() + "reading attribute '" + name + "' failed");
    return value.substr(0, value.find('\0'));
  }

  // Elements [offset, offset + count) of the 1-D dataset `set`, called `name`.
  template <class T>
  std::vector<T> slice(hid_t set, const char* name, int64_t offset, int64_t count) const {
    std::vector<T> values(static_cast<size_t>(count));
    if (count == 0) return values;
    Handle space(H5Dget_space(set), H5Sclose);
    const hsize_t start = static_cast<hsize_t>(offset), n = static_cast<hsize_t>(count);
    Handle memory(H5Screate_simple(1, &n, nullptr), H5Sclose);
    check(space >= 0 && H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &n, nullptr) >= 0 &&
              H5Dread(set, native_type<T>(), memory, space, H5P_DEFAULT, values.data()) >= 0,
          bad() + "reading " + name + " " + std::to_string(offset) + ".." + std::to_string(offset + count) +
              " failed (truncated or damaged file)");
    return values;
  }

  // The length of the 1-D dataset `name`.
  int64_t length(const char* name) const {
    check(has(name), bad() + "missing dataset " + name + "; remake the file with `loom data prepare`");
    Handle set(H5Dopen2(file_, name, H5P_DEFAULT), H5Dclose);
    Handle space(H5Dget_space(set), H5Sclose);
    check(set >= 0 && space >= 0 && H5Sget_simple_extent_ndims(space) == 1, bad() + std::string(name) + " is not 1-D");
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, nullptr);
    return static_cast<int64_t>(n);
  }

  hid_t file() const { return file_; }

  int64_t int_attr(const char* name) const {
    Handle attr(H5Aopen(file_, name, H5P_DEFAULT), H5Aclose);
    check(attr >= 0, bad() + "missing attribute '" + name + "'");
    int64_t value = 0;
    check(H5Aread(attr, H5T_NATIVE_INT64, &value) >= 0, bad() + "reading attribute '" + name + "' failed");
    return value;
  }

 private:
  std::string path_;
  Handle file_;
};

// Tokens starting at index `first` of the file: each inside the vocabulary.
void check_vocabulary(const int32_t* tokens, size_t n, int64_t first, int64_t vocab_size, const std::string& bad) {
  for (size_t i = 0; i < n; ++i)
    check(tokens[i] >= 0 && tokens[i] < vocab_size,
          bad + "token " + std::to_string(tokens[i]) + " at index " + std::to_string(first + static_cast<int64_t>(i)) +
              " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
}

// The index against `n_tokens` tokens (the tokens themselves are checked as they are read).
void validate_index(const TokenDataset& d, int64_t n_tokens, const std::string& bad) {
  check(d.doc_offsets.size() >= 1 && d.doc_offsets.front() == 0, bad + "doc_offsets must start at 0");
  for (size_t i = 1; i < d.doc_offsets.size(); ++i)
    check(d.doc_offsets[i] >= d.doc_offsets[i - 1], bad + "doc_offsets decrease at document " + std::to_string(i - 1));
  check(d.doc_offsets.back() == n_tokens, bad + "doc_offsets end at " + std::to_string(d.doc_offsets.back()) +
                                              " but there are " + std::to_string(n_tokens) + " tokens");
  check(d.vocab_size >= 2, bad + "vocab_size attribute is " + std::to_string(d.vocab_size));
  if (!d.has_answers()) return;
  check(d.answer_offsets.size() == d.doc_offsets.size() && d.answer_offsets.front() == 0 &&
            d.answer_offsets.back() == static_cast<int64_t>(d.answers.size()),
        bad + "answer_offsets must have one entry per document plus one, from 0 to the number of answer spans");
  for (int64_t i = 0; i < d.num_docs(); ++i) {
    check(d.answer_offsets[i + 1] >= d.answer_offsets[i], bad + "answer_offsets decrease at document " + std::to_string(i));
    for (const AnswerSpan& a : d.answers_of(i)) {
      check(a.start >= 0 && a.length >= 0 && a.start + a.length <= d.doc_length(i),
            bad + "an answer span of document " + std::to_string(i) + " lies outside it");
      check(a.evidence >= 0 && a.evidence < d.doc_length(i),
            bad + "the evidence of an answer of document " + std::to_string(i) + " lies outside it");
    }
  }
}

// The answer arrays as they are in the file: version 1 has one entry per document, -1 for none.
void read_answers(const Reader& r, int64_t version, TokenDataset& d) {
  if (!r.has("/answer_start")) return;
  const auto start = r.array<int64_t>("/answer_start"), length = r.array<int64_t>("/answer_len"),
             evidence = r.array<int64_t>("/evidence_start");
  check(length.size() == start.size() && evidence.size() == start.size(),
        r.bad() + "answer_start, answer_len and evidence_start differ in length");
  if (version >= 2) {
    d.answer_offsets = r.array<int64_t>("/answer_offsets");
    for (size_t i = 0; i < start.size(); ++i) d.answers.push_back({start[i], length[i], evidence[i]});
    return;
  }
  check(start.size() + 1 == d.doc_offsets.size(), r.bad() + "version 1 answer arrays must have one entry per document");
  d.answer_offsets = {0};
  for (size_t i = 0; i < start.size(); ++i) {
    if (start[i] >= 0) d.answers.push_back({start[i], length[i], evidence[i]});
    d.answer_offsets.push_back(static_cast<int64_t>(d.answers.size()));
  }
}

}  // namespace

class TokenFile {
 public:
  explicit TokenFile(std::unique_ptr<Reader> reader)
      : reader_(std::move(reader)), tokens_(H5Dopen2(reader_->file(), "/tokens", H5P_DEFAULT), H5Dclose) {}

  std::vector<int32_t> read(int64_t offset, int64_t count, int64_t vocab_size) const {
    std::vector<int32_t> values = reader_->slice<int32_t>(tokens_, "/tokens", offset, count);
    check_vocabulary(values.data(), values.size(), offset, vocab_size, reader_->bad());
    return values;
  }

 private:
  std::unique_ptr<Reader> reader_;
  Handle tokens_;
};

std::vector<int32_t> TokenDataset::document(int64_t d, int64_t begin, int64_t count) const {
  check(d >= 0 && d < num_docs(), "document " + std::to_string(d) + " of a dataset of " + std::to_string(num_docs()));
  if (count < 0) count = doc_length(d) - begin;
  check(begin >= 0 && begin + count <= doc_length(d), "tokens " + std::to_string(begin) + ".." + std::to_string(begin + count) +
                                                          " lie outside document " + std::to_string(d));
  const int64_t offset = doc_offsets[d] + begin;
  if (file) return file->read(offset, count, vocab_size);
  return {tokens.begin() + offset, tokens.begin() + offset + count};
}

std::vector<AnswerSpan> TokenDataset::answers_of(int64_t d) const {
  if (!has_answers()) return {};
  return {answers.begin() + answer_offsets[d], answers.begin() + answer_offsets[d + 1]};
}

void TokenDataset::add_document(const std::vector<int32_t>& doc, const std::vector<AnswerSpan>& spans) {
  // The first document with answers gives every earlier one an empty list.
  if (!spans.empty() && !has_answers()) answer_offsets.assign(doc_offsets.size(), 0);
  tokens.insert(tokens.end(), doc.begin(), doc.end());
  doc_offsets.push_back(static_cast<int64_t>(tokens.size()));
  if (!has_answers()) return;
  answers.insert(answers.end(), spans.begin(), spans.end());
  answer_offsets.push_back(static_cast<int64_t>(answers.size()));
}

// Tokens go to the file in chunks of 64K (256 KiB), small enough that a small dataset stays small.
constexpr hsize_t kTokenChunk = 1 << 16;

DatasetWriter::DatasetWriter(const std::string& path, int64_t vocab_size)
    : path_(path), tmp_(path + ".tmp"), vocab_size_(vocab_size) {
  quiet_hdf5();
  file_ = H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  check(file_ >= 0, "cannot create '" + tmp_ + "': check that the folder exists and is writable");
  const hsize_t none = 0, unlimited = H5S_UNLIMITED;
  Handle space(H5Screate_simple(1, &none, &unlimited), H5Sclose);
  Handle chunked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(chunked, 1, &kTokenChunk);
  tokens_ = H5Dcreate2(file_, "/tokens", H5T_NATIVE_INT32, space, H5P_DEFAULT, chunked, H5P_DEFAULT);
  check(tokens_ >= 0, "HDF5: creating /tokens in '" + tmp_ + "' failed");
}

DatasetWriter::~DatasetWriter() {
  if (tokens_ >= 0) H5Dclose(tokens_);
  if (file_ >= 0) {
    H5Fclose(file_);
    std::error_code ignored;
    std::filesystem::remove(tmp_, ignored);
  }
}

void DatasetWriter::write(const int32_t* tokens, size_t count) {
  const std::string bad = "refusing to write dataset '" + path_ + "': ";
  check_vocabulary(tokens, count, written_, vocab_size_, bad);
  if (count == 0) return;
  const hsize_t start = static_cast<hsize_t>(written_), n = count, size = start + n;
  check(H5Dset_extent(tokens_, &size) >= 0, "HDF5: growing /tokens of '" + tmp_ + "' failed");
  Handle space(H5Dget_space(tokens_), H5Sclose);
  Handle memory(H5Screate_simple(1, &n, nullptr), H5Sclose);
  check(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &n, nullptr) >= 0 &&
            H5Dwrite(tokens_, H5T_NATIVE_INT32, memory, space, H5P_DEFAULT, tokens) >= 0,
        "HDF5: writing tokens to '" + tmp_ + "' failed (disk full?)");
  written_ += static_cast<int64_t>(count);
}

void DatasetWriter::finish(const TokenDataset& index) {
  const std::string bad = "refusing to write dataset '" + path_ + "': ";
  check(index.vocab_size == vocab_size_, bad + "its index names another vocabulary size");
  validate_index(index, written_, bad);
  write_array(file_, "/doc_offsets", index.doc_offsets);
  if (index.has_answers()) {
    std::vector<int64_t> start, length, evidence;
    for (const AnswerSpan& a : index.answers) {
      start.push_back(a.start);
      length.push_back(a.length);
      evidence.push_back(a.evidence);
    }
    write_array(file_, "/answer_offsets", index.answer_offsets);
    write_array(file_, "/answer_start", start);
    write_array(file_, "/answer_len", length);
    write_array(file_, "/evidence_start", evidence);
  }
  write_attr(file_, "format", std::string("loom-tokens"));
  write_attr(file_, "version", kDatasetVersion);
  write_attr(file_, "tokenizer", index.tokenizer);
  write_attr(file_, "vocab_size", index.vocab_size);
  write_attr(file_, "task", index.task);
  H5Dclose(tokens_);
  tokens_ = -1;
  check(H5Fclose(file_) >= 0, "HDF5: closing '" + tmp_ + "' failed (disk full?)");
  file_ = -1;
  std::filesystem::rename(tmp_, path_);
}

void write_dataset(const std::string& path, const TokenDataset& data) {
  check(!data.file, "refusing to write dataset '" + path + "': its tokens are in another file; write datasets built in memory");
  DatasetWriter writer(path, data.vocab_size);
  writer.write(data.tokens.data(), data.tokens.size());
  writer.finish(data);
}

TokenDataset read_dataset(const std::string& path) {
  quiet_hdf5();
  auto reader = std::make_unique<Reader>(path);
  const Reader& r = *reader;
  check(r.text_attr("format") == "loom-tokens", r.bad() + "format attribute is not 'loom-tokens'");
  const int64_t version = r.int_attr("version");
  check(version >= 1 && version <= kDatasetVersion, r.bad() + "format version " + std::to_string(version) +
                                                         " is not one this Loom reads (1 to " +
                                                         std::to_string(kDatasetVersion) + "); a newer Loom wrote it?");
  TokenDataset d;
  d.tokenizer = r.text_attr("tokenizer");
  d.vocab_size = r.int_attr("vocab_size");
  d.task = r.text_attr("task");
  d.doc_offsets = r.array<int64_t>("/doc_offsets");
  read_answers(r, version, d);
  validate_index(d, r.length("/tokens"), r.bad());
  d.file = std::make_shared<const TokenFile>(std::move(reader));
  return d;
}

std::string hdf5_library_version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

}  // namespace loom
