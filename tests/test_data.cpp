// Datasets and the loader: HDF5 round trip, damaged files, packing of whole documents with their
// boundaries, labels, and an exact cursor.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>

#include "runtime/data/batch_loader.h"
#include "runtime/data/copy_task.h"
#include "runtime/data/passkey_task.h"
#include "runtime/data/recall_task.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/token_dataset.h"
#include "runtime/data/tokenizer.h"
#include "tests/test_util.h"

namespace loom {
namespace {

TEST(Tokenizer, BytesRoundTripAndSpecialsAreDropped) {
  const std::string text = "pass key: 12345 \xc3\xa9";
  auto ids = tokenizer::encode(text);
  EXPECT_EQ(ids.size(), text.size());
  ids.insert(ids.begin(), tokenizer::kBos);
  ids.push_back(tokenizer::kEos);
  EXPECT_EQ(tokenizer::decode(ids), text);
}

TEST(Dataset, Hdf5RoundTripKeepsEverything) {
  test::ScratchDir dir;
  const TokenDataset d = make_passkey_dataset({20, 150, 600, 3});
  write_dataset(dir.path("d.h5"), d);
  const TokenDataset back = read_dataset(dir.path("d.h5"));
  EXPECT_TRUE(back.tokens.empty()) << "the tokens stay in the file";
  for (int64_t i = 0; i < d.num_docs(); ++i) EXPECT_EQ(back.document(i), d.document(i)) << "document " << i;
  EXPECT_EQ(back.document(3, 5, 7), d.document(3, 5, 7));
  EXPECT_EQ(back.doc_offsets, d.doc_offsets);
  EXPECT_EQ(back.answer_offsets, d.answer_offsets);
  EXPECT_EQ(back.answers, d.answers);
  EXPECT_EQ(back.task, "passkey");
  EXPECT_EQ(back.vocab_size, tokenizer::kVocabSize);
}

TEST(Dataset, PasskeyDocumentsHoldTheirKeyAndAnswer) {
  const TokenDataset d = make_passkey_dataset({50, 150, 2000, 9});
  for (int64_t i = 0; i < d.num_docs(); ++i) {
    const auto begin = d.tokens.begin() + d.doc_offsets[i];
    const std::vector<int32_t> doc(begin, begin + d.doc_length(i));
    const std::string text = tokenizer::decode(doc);
    ASSERT_EQ(d.answers_of(i).size(), 1u);
    const AnswerSpan a = d.answers_of(i)[0];
    const std::string answer = tokenizer::decode({begin + a.start, begin + a.start + a.length});
    ASSERT_EQ(answer.size(), 5u);
    EXPECT_EQ(text.substr(static_cast<size_t>(a.evidence - 1), 21), "The pass key is " + answer);
    EXPECT_EQ(doc.front(), tokenizer::kBos);
    EXPECT_EQ(doc.back(), tokenizer::kEos);
    EXPECT_GE(d.doc_length(i), 150);
    EXPECT_LE(d.doc_length(i), 2000 + 2);
  }
}

TEST(Dataset, MarkerPasskeyMarksKeyAndQuestionWithAByteFoundNowhereElse) {
  const TokenDataset d = make_passkey_dataset({50, 64, 600, 4, PasskeyStyle::kMarker});
  for (int64_t i = 0; i < d.num_docs(); ++i) {
    const auto begin = d.tokens.begin() + d.doc_offsets[i];
    const std::string text = tokenizer::decode({begin, begin + d.doc_length(i)});
    const AnswerSpan a = d.answers_of(i).at(0);
    const std::string answer = tokenizer::decode({begin + a.start, begin + a.start + a.length});
    EXPECT_EQ(text.substr(static_cast<size_t>(a.evidence - 1), 6), "#" + answer);
    EXPECT_EQ(text.substr(static_cast<size_t>(a.start - 3), 2), "?#");
    EXPECT_EQ(std::count(text.begin(), text.end(), '#'), 2) << "one marker for the key, one for the question";
  }
}

// --key-digits: keys of that many digits (no leading zero), the only digits in the document.
TEST(Dataset, PasskeyKeysHaveTheAskedNumberOfDigits) {
  for (const int64_t digits : {1, 2, 9}) {
    const TokenDataset d = make_passkey_dataset({40, 64, 300, 5, PasskeyStyle::kMarker, digits});
    for (int64_t i = 0; i < d.num_docs(); ++i) {
      const auto begin = d.tokens.begin() + d.doc_offsets[i];
      const std::string text = tokenizer::decode({begin, begin + d.doc_length(i)});
      const AnswerSpan a = d.answers_of(i).at(0);
      const std::string answer = tokenizer::decode({begin + a.start, begin + a.start + a.length});
      ASSERT_EQ(static_cast<int64_t>(answer.size()), digits);
      EXPECT_NE(answer[0], '0');
      EXPECT_EQ(std::count_if(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }), 2 * digits)
          << "the key and its answer are the only digits";
    }
  }
  EXPECT_NE(test::error_of([] { make_passkey_dataset({4, 64, 300, 5, PasskeyStyle::kMarker, 10}); }).find("--key-digits"),
            std::string::npos);
}

std::string document_text(const TokenDataset& d, int64_t i) { return tokenizer::decode(d.document(i)); }

// Recall documents: `pairs` distinct keys stated first as "keyvalue ", each asked once later; an
// answer is recoverable from the document alone (the value after the key's first occurrence), and
// each span's evidence is that stated value.
TEST(Dataset, RecallDocumentsStateEveryPairFirstAndAskEachOnce) {
  const RecallOptions o{60, 120, 900, 8, 2, 3, 5};
  const TokenDataset d = make_recall_dataset(o);
  const int64_t pair_bytes = o.key_len + o.value_len + 1;
  for (int64_t i = 0; i < d.num_docs(); ++i) {
    const std::string text = document_text(d, i);  // BOS/EOS dropped: byte j is token j + 1
    EXPECT_GE(d.doc_length(i), o.min_len + 2);
    EXPECT_LE(d.doc_length(i), o.max_len + 2);
    const std::vector<AnswerSpan> spans = d.answers_of(i);
    ASSERT_EQ(static_cast<int64_t>(spans.size()), o.pairs);
    std::set<std::string> keys, asked;
    for (int64_t p = 0; p < o.pairs; ++p) {
      const std::string pair = text.substr(static_cast<size_t>(p * pair_bytes), static_cast<size_t>(pair_bytes));
      EXPECT_TRUE(std::all_of(pair.begin(), pair.begin() + 2, ::islower)) << pair;
      EXPECT_TRUE(std::all_of(pair.begin() + 2, pair.begin() + 5, ::isdigit)) << pair;
      EXPECT_EQ(pair[5], ' ');
      keys.insert(pair.substr(0, 2));
    }
    EXPECT_EQ(static_cast<int64_t>(keys.size()), o.pairs) << "keys are distinct inside a document";
    for (const AnswerSpan& a : spans) {
      EXPECT_EQ(a.length, o.value_len);
      const std::string key = text.substr(static_cast<size_t>(a.start - 1 - 2), 2);
      const std::string answer = text.substr(static_cast<size_t>(a.start - 1), static_cast<size_t>(a.length));
      const size_t stated = text.find(key);  // the pairs come first
      EXPECT_EQ(text.substr(stated + 2, static_cast<size_t>(o.value_len)), answer) << "recoverable from the document";
      EXPECT_EQ(static_cast<size_t>(a.evidence - 1), stated + 2) << "the evidence is the stated value";
      EXPECT_GT(a.start, d.doc_length(i) - 1 - o.pairs * pair_bytes) << "queries come last";
      asked.insert(key);
    }
    EXPECT_EQ(asked, keys) << "every key asked once";
    EXPECT_EQ(std::count_if(text.begin(), text.end(), ::isdigit), 2 * o.pairs * o.value_len)
        << "digits only in the pairs and the queries";
  }
}

// Copy documents: a string of letters and digits, then the same string; every byte of the second
// copy is an answer whose evidence is the same byte of the first.
TEST(Dataset, CopyDocumentsRepeatTheirStringWithOneAnswerPerCopiedByte) {
  const TokenDataset d = make_copy_dataset({200, 16, 120, 9});
  std::set<char> seen;
  for (int64_t i = 0; i < d.num_docs(); ++i) {
    const std::string text = document_text(d, i);  // BOS/EOS dropped: byte j is token j + 1
    ASSERT_EQ(text.size() % 2, 0U);
    EXPECT_GE(text.size(), 16U);
    EXPECT_LE(text.size(), 120U);
    const size_t half = text.size() / 2;
    EXPECT_EQ(text.substr(0, half), text.substr(half)) << text;
    const std::vector<AnswerSpan> spans = d.answers_of(i);
    ASSERT_EQ(spans.size(), half);
    for (size_t j = 0; j < half; ++j) {
      EXPECT_EQ(spans[j], (AnswerSpan{static_cast<int64_t>(half + j + 1), 1, static_cast<int64_t>(j + 1)}));
      EXPECT_TRUE(std::islower(text[j]) || std::isdigit(text[j])) << text;
      seen.insert(text[j]);
    }
  }
  EXPECT_EQ(seen.size(), 36U) << "every letter and digit occurs";
  EXPECT_EQ(make_copy_dataset({20, 16, 64, 9}).tokens, make_copy_dataset({20, 16, 64, 9}).tokens);
  EXPECT_NE(make_copy_dataset({20, 16, 64, 9}).tokens, make_copy_dataset({20, 16, 64, 10}).tokens);
  EXPECT_NE(test::error_of([] { make_copy_dataset({4, 1, 64, 1}); }).find("--min-len must be at least 2"), std::string::npos);
  EXPECT_NE(test::error_of([] { make_copy_dataset({4, 64, 32, 1}); }).find("--max-len must be at least --min-len"),
            std::string::npos);
}

TEST(Dataset, RecallIsDeterministicBySeedAndChecksItsOptions) {
  const TokenDataset a = make_recall_dataset({20, 200, 400, 16, 2, 2, 7});
  const TokenDataset b = make_recall_dataset({20, 200, 400, 16, 2, 2, 7});
  const TokenDataset c = make_recall_dataset({20, 200, 400, 16, 2, 2, 8});
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.answers, b.answers);
  EXPECT_NE(a.tokens, c.tokens);
  // Keys are listed in random order: with one fixed order a key's rank would say where its pair
  // sits, and position alone could answer a query.
  const TokenDataset one_letter = make_recall_dataset({400, 48, 96, 8, 1, 1, 4});
  int64_t a_first = 0, b_first = 0;
  for (int64_t i = 0; i < one_letter.num_docs(); ++i) {
    const std::string pairs = document_text(one_letter, i).substr(0, 24);
    const size_t ka = pairs.find('a'), kb = pairs.find('b');
    if (ka == std::string::npos || kb == std::string::npos) continue;
    (ka < kb ? a_first : b_first) += 1;
  }
  EXPECT_GT(a_first, 3);
  EXPECT_GT(b_first, 3);
  EXPECT_NE(test::error_of([] { make_recall_dataset({4, 100, 400, 16, 2, 2, 1}); }).find("--min-len must be at least 160"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { make_recall_dataset({4, 400, 800, 27, 1, 2, 1}); }).find("raise --key-len"),
            std::string::npos);
}

// Documents with several answer spans, and ones with none, round-trip through the file.
TEST(Dataset, AnswerSpansRoundTripPerDocument) {
  test::ScratchDir dir;
  TokenDataset d;
  d.add_document({1, 2, 3});
  d.add_document({1, 2, 3, 4, 5, 6}, {{2, 1, 1}, {4, 2, 0}});
  d.add_document({7, 8});
  d.add_document({1, 2, 3, 4}, {{3, 1, 2}});
  write_dataset(dir.path("d.h5"), d);
  const TokenDataset back = read_dataset(dir.path("d.h5"));
  EXPECT_EQ(back.answer_offsets, (std::vector<int64_t>{0, 0, 2, 2, 3}));
  EXPECT_TRUE(back.answers_of(0).empty());
  EXPECT_EQ(back.answers_of(1), (std::vector<AnswerSpan>{{2, 1, 1}, {4, 2, 0}}));
  EXPECT_EQ(back.answers_of(3), (std::vector<AnswerSpan>{{3, 1, 2}}));
  TokenDataset outside;
  outside.add_document({1, 2, 3}, {{2, 2, 0}});
  EXPECT_NE(test::error_of([&] { write_dataset(dir.path("bad.h5"), outside); }).find("lies outside it"), std::string::npos);
}

TEST(Dataset, DamagedOrMissingFilesAreClearErrors) {
  test::ScratchDir dir;
  write_dataset(dir.path("d.h5"), make_passkey_dataset({30, 150, 600, 3}));
  const auto size = std::filesystem::file_size(dir.path("d.h5"));
  std::filesystem::copy_file(dir.path("d.h5"), dir.path("cut.h5"));
  std::filesystem::resize_file(dir.path("cut.h5"), size / 2);
  EXPECT_NE(test::error_of([&] { read_dataset(dir.path("cut.h5")); }).find("corrupt dataset"), std::string::npos);
  EXPECT_NE(test::error_of([&] { read_dataset(dir.path("missing.h5")); }).find("does not exist"), std::string::npos);
  std::ofstream(dir.path("text.h5")) << "not hdf5 at all";
  EXPECT_NE(test::error_of([&] { read_dataset(dir.path("text.h5")); }).find("not an HDF5 file"), std::string::npos);
  // A token damaged inside the file is found when its document is read, named with the file.
  TokenDataset marked;
  marked.vocab_size = 100000;
  marked.add_document({5, 6, 7});
  marked.add_document({8, 74565, 9});  // 0x00012345: a byte pattern found once in the file
  write_dataset(dir.path("marked.h5"), marked);
  std::string bytes;
  {
    std::ifstream in(dir.path("marked.h5"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string mark("\x45\x23\x01\x00", 4);
  const auto at = bytes.find(mark);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(bytes.find(mark, at + 1), std::string::npos);
  bytes.replace(at, 4, std::string("\xff\xff\xff\x7f", 4));
  std::ofstream(dir.path("marked.h5"), std::ios::binary) << bytes;
  const TokenDataset damaged = read_dataset(dir.path("marked.h5"));
  EXPECT_EQ(damaged.document(0), (std::vector<int32_t>{5, 6, 7})) << "the other document reads as written";
  const std::string message = test::error_of([&] { damaged.document(1); });
  EXPECT_NE(message.find("corrupt dataset '" + dir.path("marked.h5") + "': token 2147483647 at index 4 is outside the vocabulary"),
            std::string::npos) << message;
  TokenDataset bad;
  bad.add_document({1, 2, 300});
  EXPECT_NE(test::error_of([&] { write_dataset(dir.path("bad.h5"), bad); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.path("bad.h5")));
}

// Documents of lengths 3, 5, 2, 9 (tokens 10*d + i) and budget 8.
TokenDataset small_docs() {
  TokenDataset d;
  for (int32_t doc = 0; doc < 4; ++doc) {
    const int32_t len = std::vector<int32_t>{3, 5, 2, 9}[doc];
    std::vector<int32_t> t;
    for (int32_t i = 0; i < len; ++i) t.push_back(10 * doc + i);
    d.add_document(t);
  }
  return d;
}

// Text files and folders become one document per file, framed by BOS and EOS, their bytes intact
// across the blocks they are read in; files that are not text are skipped.
TEST(Dataset, PreparedTextHoldsEveryFileWholeAcrossReadBlocks) {
  test::ScratchDir dir;
  std::filesystem::create_directories(dir.path("corpus/sub"));
  std::string big;
  for (int i = 0; big.size() < (3u << 20) + 17; ++i) big += "line " + std::to_string(i) + " of a file longer than a block\n";
  std::ofstream(dir.path("corpus/sub/b.txt")) << big;
  std::ofstream(dir.path("corpus/a.txt")) << "short";
  std::ofstream(dir.path("corpus/c.bin"), std::ios::binary) << std::string("\x01\x00\x02", 3);
  const TokenDataset index = prepare_text_dataset({dir.path("corpus")}, dir.path("text.h5"));
  const TokenDataset d = read_dataset(dir.path("text.h5"));
  ASSERT_EQ(d.num_docs(), 2);
  EXPECT_EQ(index.doc_offsets, d.doc_offsets);
  for (const auto& [doc, text] : {std::pair<int64_t, std::string>{0, "short"}, {1, big}}) {
    const auto tokens = d.document(doc);
    ASSERT_EQ(tokens.size(), text.size() + 2);
    EXPECT_EQ(tokens.front(), tokenizer::kBos);
    EXPECT_EQ(tokens.back(), tokenizer::kEos);
    EXPECT_EQ(tokenizer::decode(tokens), text) << "document " << doc;
  }
}

// Peak resident memory of a command run to completion (wait4's rusage of that one child).
int64_t peak_rss_of(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << args[0] << " " << args[1];
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// `loom data prepare` streams: six times the input (and 160 MB more of tokens) leaves its peak
// memory where it was.
TEST(Dataset, PreparingALargerInputTakesNoMoreMemory) {
  test::ScratchDir dir;
  const std::string line = "a line of text that repeats until the file is large enough\n";
  std::vector<int64_t> peaks;
  for (const int mb : {8, 48}) {
    const std::string input = dir.path("in" + std::to_string(mb) + ".txt");
    {
      std::ofstream out(input);
      for (size_t written = 0; written < (static_cast<size_t>(mb) << 20); written += line.size()) out << line;
    }
    peaks.push_back(peak_rss_of({LOOM_BINARY, "data", "prepare", "--input", input, "--out", dir.path("out.h5")}));
    EXPECT_GE(read_dataset(dir.path("out.h5")).num_tokens(), static_cast<int64_t>(mb) << 20);
  }
  std::printf("peak memory of data prepare: %.1f MB for 8 MB, %.1f MB for 48 MB of text\n", peaks[0] / 1e6, peaks[1] / 1e6);
  EXPECT_LT(peaks[1] - peaks[0], 16 << 20) << "peak " << peaks[0] << " then " << peaks[1] << " bytes";
}

TEST(Loader, PacksWholeDocumentsKeepsBoundariesAndCutsOnlyOversizedOnes) {
  const TokenDataset d = small_docs();
  BatchLoader loader(d, {0, 1, 2, 3}, 8, "all", 5);
  std::vector<int64_t> seen_docs;
  for (int batch = 0; batch < 6; ++batch) {
    const PackedBatch b = loader.next();
    ASSERT_EQ(b.tokens.size(), 8u);
    std::vector<int64_t> packed_len(b.source_docs.size(), 0);
    for (size_t i = 0; i < 8; ++i) {
      if (b.doc_ids[i] < 0) {
        EXPECT_EQ(b.labels[i], -1);
        continue;
      }
      const int64_t doc = b.source_docs[b.doc_ids[i]];
      EXPECT_EQ(b.tokens[i], 10 * doc + b.positions[i]) << "token from the right document at the right position";
      const bool last = i + 1 == 8 || b.doc_ids[i + 1] != b.doc_ids[i];
      EXPECT_EQ(b.labels[i], last ? -1 : b.tokens[i + 1]) << "labels never cross a document end";
      ++packed_len[b.doc_ids[i]];
    }
    int64_t longer = 0;
    for (size_t j = 0; j < b.source_docs.size(); ++j) {
      EXPECT_EQ(packed_len[j], std::min<int64_t>(8, d.doc_length(b.source_docs[j]))) << "only documents longer than the budget are cut";
      longer += d.doc_length(b.source_docs[j]) > 8;
    }
    EXPECT_EQ(b.cut_docs, longer);
    seen_docs.insert(seen_docs.end(), b.source_docs.begin(), b.source_docs.end());
  }
  for (int64_t doc = 0; doc < 4; ++doc) EXPECT_GE(std::count(seen_docs.begin(), seen_docs.end(), doc), 1);
}

TEST(Loader, AnswersOnlyLabelsTheAnswerSpan) {
  TokenDataset d;
  d.add_document({1, 2, 3, 4, 5, 6}, {{3, 2, 1}});
  const auto labels = document_labels(d, 0, d.document(0), "answers");
  EXPECT_EQ(labels, (std::vector<int64_t>{-1, -1, 4, 5, -1, -1}));
  d.add_document({1, 2, 3, 4, 5, 6, 7, 8}, {{2, 1, 1}, {5, 2, 3}});
  EXPECT_EQ(document_labels(d, 1, d.document(1), "answers"), (std::vector<int64_t>{-1, 3, -1, -1, 6, 7, -1, -1}))
      << "every span of a document is labelled";
  EXPECT_EQ(document_labels(d, 0, d.document(0), "all"), (std::vector<int64_t>{2, 3, 4, 5, 6, -1}));
  EXPECT_EQ(document_labels(d, 0, d.document(0, 0, 4), "answers"), (std::vector<int64_t>{-1, -1, 4, -1}))
      << "a document cut inside its answer labels what it holds";
}

TEST(Loader, CursorResumesExactlyAcrossEpochs) {
  const TokenDataset d = make_passkey_dataset({40, 150, 400, 1});
  const auto docs = split_documents(d, Split::kTrain, 0.1);
  BatchLoader a(d, docs, 512, "all", 9);
  for (int i = 0; i < 23; ++i) a.next();
  BatchLoader b(d, docs, 512, "all", 9);
  b.set_cursor(a.cursor());
  for (int i = 0; i < 30; ++i) {
    const PackedBatch x = a.next(), y = b.next();
    ASSERT_EQ(x.tokens, y.tokens) << "batch " << i;
    ASSERT_EQ(x.labels, y.labels);
  }
  EXPECT_GT(a.cursor().epoch, 0) << "the test must cross an epoch boundary";
}

TEST(Loader, ValidationSplitIsDisjointAndDeterministic) {
  const TokenDataset d = make_passkey_dataset({200, 150, 300, 2});
  const auto train = split_documents(d, Split::kTrain, 0.1), val = split_documents(d, Split::kValidation, 0.1);
  EXPECT_EQ(train.size() + val.size(), 200u);
  EXPECT_GT(val.size(), 5u);
  EXPECT_LT(val.size(), 40u);
  for (int64_t v : val) EXPECT_EQ(std::count(train.begin(), train.end(), v), 0);
  EXPECT_EQ(val, split_documents(d, Split::kValidation, 0.1));
}

}  // namespace
}  // namespace loom
