// Config loading: precedence (defaults < base file < file < --set), and errors that name the key,
// the file and line, and what is allowed.
#include <fstream>
#include <map>
#include <sstream>

#include "runtime/core/config.h"
#include "tests/test_util.h"

namespace loom {
namespace {

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// The message of the loom::Error that `fn` throws (fails the test if it throws none).
TEST(Config, BaseFileThenFileThenOverrides) {
  test::ScratchDir dir;
  write(dir.path("base.yaml"), "model:\n  d_model: 64\n  n_layers: 3\ntrain:\n  lr: 0.01\n");
  write(dir.path("child.yaml"), "base: base.yaml\nmodel:\n  n_layers: 5\ntrain:\n  steps: 7\n");
  const Config c = load_config(dir.path("child.yaml"), {"train.steps=9", "data.loss_on=answers"});
  EXPECT_EQ(c.model.d_model, 64);   // from base
  EXPECT_EQ(c.model.n_layers, 5);   // child overrides base
  EXPECT_DOUBLE_EQ(c.train.lr, 0.01);
  EXPECT_EQ(c.train.steps, 9);      // --set overrides the file
  EXPECT_EQ(c.data.loss_on, "answers");
  EXPECT_EQ(c.model.n_heads, 4);    // default
  EXPECT_EQ(c.origin.at("model.n_layers"), dir.path("child.yaml") + ":3");
}

TEST(Config, ResolvedYamlReadsBackIdentically) {
  Config c;
  c.train.lr = 0.1 + 0.2;  // not exactly representable in short decimal
  c.run.dir = "some/where";
  c.model.tie_embeddings = true;
  const Config back = parse_config(to_yaml(c), "resolved");
  EXPECT_EQ(to_yaml(back), to_yaml(c));
  EXPECT_EQ(back.train.lr, c.train.lr);
  for (const auto& key : config_keys()) EXPECT_TRUE(back.origin.count(key)) << key << " was not written";
}

// docs/configuration.md lists every key once (section "Every key"), with the default and the
// allowed values the declaration in config.cpp gives it: the page cannot drift from the code.
TEST(Config, TheConfigurationPageListsEveryKeyWithItsDefaultAndRange) {
  std::ifstream page(std::string(LOOM_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_TRUE(page) << "docs/configuration.md is missing";
  std::map<std::string, std::vector<std::string>> rows;  // key -> its cells after the key
  bool in_table = false;  // the section "## Every key"
  for (std::string line; std::getline(page, line);) {
    if (line.rfind("## ", 0) == 0) in_table = line == "## Every key";
    if (!in_table || line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> cells;
    std::stringstream in(line.substr(1));
    for (std::string cell; std::getline(in, cell, '|');) {
      const auto first = cell.find_first_not_of(' '), last = cell.find_last_not_of(' ');
      cells.push_back(first == std::string::npos ? "" : cell.substr(first, last - first + 1));
    }
    const std::string key = cells[0].substr(1, cells[0].size() - 2);  // without the backquotes
    EXPECT_FALSE(rows.count(key)) << key << " is listed twice";
    rows[key] = {cells.begin() + 1, cells.end()};
  }
  const auto unquote = [](const std::string& cell) {
    return cell.size() >= 2 && cell.front() == '`' && cell.back() == '`' ? cell.substr(1, cell.size() - 2) : cell;
  };
  for (const KeyInfo& k : describe_keys()) {
    auto it = rows.find(k.key);
    if (it == rows.end()) {
      ADD_FAILURE() << k.key << " is not on the page; its row: | `" << k.key << "` | `" << k.default_value << "` | "
                    << k.allowed << " | ... |";
      continue;
    }
    ASSERT_GE(it->second.size(), 3u) << k.key << ": a row is | key | default | allowed | meaning |";
    EXPECT_EQ(unquote(it->second[0]), k.default_value) << k.key << "'s default";
    EXPECT_EQ(it->second[1], k.allowed) << k.key << "'s allowed values";
    EXPECT_FALSE(it->second[2].empty()) << k.key << " has no meaning written";
    rows.erase(it);
  }
  for (const auto& [key, cells] : rows) ADD_FAILURE() << key << " is on the page but is not a config key";
}

TEST(Config, UnknownKeyNamesKeyFileLineAndAlternatives) {
  test::ScratchDir dir;
  write(dir.path("bad.yaml"), "model:\n  d_model: 64\n  d_modle: 32\n");
  const std::string msg = test::error_of([&] { load_config(dir.path("bad.yaml")); });
  EXPECT_NE(msg.find("model.d_modle"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad.yaml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("d_model"), std::string::npos) << "lists the known keys: " << msg;
  EXPECT_NE(test::error_of([&] { load_config(dir.path("bad.yaml"), {}); }).find("unknown"), std::string::npos);
  EXPECT_NE(test::error_of([] { parse_config("colour: red\n", "x"); }).find("sections are"), std::string::npos);
}

TEST(Config, WrongTypeAndRangeAndChoice) {
  EXPECT_NE(test::error_of([] { parse_config("train:\n  steps: many\n", "f.yaml"); }).find("train.steps must be an integer"),
            std::string::npos);
  const std::string range = test::error_of([] { parse_config("train:\n  lr: -1\n", "f.yaml"); });
  EXPECT_NE(range.find("f.yaml:2"), std::string::npos) << range;
  EXPECT_NE(range.find("out of range"), std::string::npos) << range;
  const std::string whole = test::error_of([] { parse_config("model:\n  lact:\n    chunk: 0\n", "f.yaml"); });
  EXPECT_NE(whole.find("allowed: [1, 67108864]"), std::string::npos) << "an integer key's bounds print whole: " << whole;
  const std::string choice = test::error_of([] { parse_config("train:\n  dtype: float16\n", "f.yaml"); });
  EXPECT_NE(choice.find("float32, float64, bfloat16"), std::string::npos) << choice;
  EXPECT_NE(test::error_of([] { parse_config("", "x", {"train.lr"}); }).find("key=value"), std::string::npos);
  EXPECT_NE(test::error_of([] { parse_config("", "x", {"train.lr=[1"}); }).find("not valid YAML"), std::string::npos);
  EXPECT_NE(test::error_of([] { parse_config("train:\n  lr: [1, 2]\n", "f.yaml"); }).find("train.lr must be a number"),
            std::string::npos);
}

TEST(Config, InconsistentValuesAreRejected) {
  const std::string heads = test::error_of([] { parse_config("model:\n  d_model: 100\n  n_heads: 3\n", "m.yaml"); });
  EXPECT_NE(heads.find("model.n_heads"), std::string::npos) << heads;
  EXPECT_NE(heads.find("m.yaml:3"), std::string::npos) << heads;
  EXPECT_NE(test::error_of([] { parse_config("model:\n  n_kv_heads: 3\n", "m"); }).find("must divide model.n_heads"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { parse_config("train:\n  seq_len: 100\n  tokens_per_step: 250\n", "m"); }).find("multiple"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { parse_config("parallel:\n  tp: 0\n", "m"); }).find("parallel.tp"), std::string::npos);
  EXPECT_NE(test::error_of([] { parse_config("parallel:\n  sp: 2\n  attention: local\n", "m"); })
                .find("parallel.attention = local cannot run with parallel.sp = 2"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { parse_config("parallel:\n  dp: some\n", "m"); }).find("parallel.dp must be an integer"),
            std::string::npos);
  // What a placement and token splitting cannot run with, and a topology without a placement, each
  // refused naming the key.
  for (const auto& [yaml, message] : std::vector<std::pair<std::string, std::string>>{
           {"parallel:\n  placement: zeppelin\n  attention: local\n", "with parallel.attention = local"},
           {"parallel:\n  topology: t.yaml\n", "parallel.topology is only read with parallel.placement: zeppelin"},
           {"parallel:\n  token_weave: on\n  tp: 2\ntrain:\n  strategy: seco\n", "token_weave = on with train.strategy = seco"}}) {
    const std::string msg = test::error_of([&] { parse_config(yaml, "z.yaml"); });
    EXPECT_NE(msg.find(message), std::string::npos) << yaml << " -> " << msg;
  }
}

TEST(Config, DataParallelDegreeAutoRoundTrips) {
  const Config c = parse_config("parallel:\n  dp: auto\n  sp: 2\n", "m");
  EXPECT_EQ(c.parallel.dp, ParallelConfig::kAuto);
  EXPECT_EQ(parse_config(to_yaml(c), "again").parallel.dp, ParallelConfig::kAuto);
  EXPECT_EQ(parse_config("parallel:\n  dp: 3\n", "m").parallel.dp, 3);
}

TEST(Config, BaseCyclesAndMissingFilesAreClearErrors) {
  test::ScratchDir dir;
  write(dir.path("a.yaml"), "base: b.yaml\n");
  write(dir.path("b.yaml"), "base: a.yaml\n");
  EXPECT_NE(test::error_of([&] { load_config(dir.path("a.yaml")); }).find("cycle"), std::string::npos);
  EXPECT_NE(test::error_of([&] { load_config(dir.path("none.yaml")); }).find("cannot read"), std::string::npos);
  write(dir.path("syntax.yaml"), "model: [unclosed\n");
  EXPECT_NE(test::error_of([&] { load_config(dir.path("syntax.yaml")); }).find("YAML syntax error"), std::string::npos);
}

}  // namespace
}  // namespace loom
