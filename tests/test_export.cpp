// Export and import: hf export -> import gives the same logits (f32 exactly, bf16 after rounding),
// the GGUF file reads back with every key and tensor, and every reader turns damaged input into a
// clear error.
#include <filesystem>
#include <cstring>
#include <fstream>

#include "optim/adamw.h"
#include "runtime/core/safetensors.h"
#include "runtime/export/gguf_export.h"
#include "runtime/export/gguf_file.h"
#include "runtime/export/hf_export.h"
#include "runtime/export/hf_import.h"
#include "runtime/train/checkpoint.h"
#include "tests/test_util.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

// A float32 byte-level model saved as a checkpoint of run `run`.
struct SavedModel {
  Llama model{nullptr};
  std::string run;

  SavedModel(const test::ScratchDir& dir, bool tied = false) : run(dir.path("run")) {
    ModelConfig c = test::tiny_model(tied);
    c.vocab_size = 259;
    torch::manual_seed(5);
    model = Llama(c);
    Config config;
    config.model = c;
    config.train.seq_len = config.train.tokens_per_step = 256;
    config.model.max_seq_len = 256;
    model->to(torch::kFloat32);
    save_checkpoint(run, 1, model->parameter_list(), AdamW(model->parameter_list(), {}).state(), LoaderCursor{}, config);
  }
};

torch::Tensor logits(Llama& m) {
  const auto tokens = torch::arange(0, 200, 7, torch::kInt64);
  const auto pos = torch::arange(tokens.size(0), torch::kInt64);
  torch::NoGradGuard no_grad;
  return m->forward(tokens, pos, torch::zeros_like(pos));
}

Llama imported(const std::string& hf, const std::string& run) {
  const ModelConfig c = import_hf(hf, run);
  Llama m(c);
  load_weights(resolve_checkpoint(run, run), m->parameter_list());
  return m;
}

TEST(HfExport, ImportGivesTheSameLogits) {
  test::ScratchDir dir;
  SavedModel saved(dir);
  export_hf(saved.run, dir.path("hf"), torch::kFloat32, 1 << 30);
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(dir.path("hf") + "/" + f)) << f;
  EXPECT_EQ(SafetensorsFile(dir.path("hf/model.safetensors")).metadata().at("format"), "pt");
  Llama back = imported(dir.path("hf"), dir.path("back"));
  EXPECT_TRUE(torch::equal(logits(back), logits(saved.model))) << "f32 export and import are exact";
}

TEST(HfExport, Bf16ShardsRoundEveryWeightOnce) {
  test::ScratchDir dir;
  SavedModel saved(dir, /*tied=*/true);
  export_hf(saved.run, dir.path("hf"), torch::kBFloat16, 4096);
  ASSERT_TRUE(fs::exists(dir.path("hf/model.safetensors.index.json")));
  EXPECT_FALSE(fs::exists(dir.path("hf/model.safetensors")));
  Llama back = imported(dir.path("hf"), dir.path("back"));
  for (const auto& [name, p] : saved.model->parameter_list()) {
    const auto stored = back->named_parameters()[name];
    EXPECT_TRUE(torch::equal(stored, p.to(torch::kBFloat16).to(torch::kFloat32))) << name;
  }
  const auto want = logits(saved.model), got = logits(back);
  EXPECT_LT(test::relative_error(got, want), 2e-2) << "bf16 weights move the logits by about bf16's precision";
  EXPECT_GT(test::relative_error(got, want), 0.0);
}

TEST(HfExport, RefusesToOverwriteAndNeedsTheByteVocab) {
  test::ScratchDir dir;
  SavedModel saved(dir);
  fs::create_directories(dir.path("taken"));
  EXPECT_NE(test::error_of([&] { export_hf(saved.run, dir.path("taken"), torch::kFloat32, 1 << 30); }).find("already exists"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { export_hf(dir.path("nothing"), dir.path("x"), torch::kFloat32, 1 << 30); }).find("does not exist"),
            std::string::npos);
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(HfImport, UnsupportedFeaturesNameTheField) {
  test::ScratchDir dir;
  SavedModel saved(dir);
  export_hf(saved.run, dir.path("hf"), torch::kFloat32, 1 << 30);
  const std::string config = dir.path("hf/config.json");
  std::ifstream in(config);
  const std::string original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string text = original;
    text.replace(text.find(from), from.size(), to);
    write_text(config, text);
    return test::error_of([&] { import_hf(dir.path("hf"), dir.path("out")); });
  };
  EXPECT_NE(with("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}").find("rope_scaling"),
            std::string::npos);
  EXPECT_NE(with("\"attention_bias\": false", "\"attention_bias\": true").find("attention_bias"), std::string::npos);
  EXPECT_NE(with("\"model_type\": \"llama\"", "\"model_type\": \"mistral\"").find("model_type 'mistral'"), std::string::npos);
  EXPECT_NE(with("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"").find("hidden_act"), std::string::npos);
  EXPECT_NE(with("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3").find("model.layers.2"), std::string::npos);
  write_text(config, "{not json");
  EXPECT_NE(test::error_of([&] { import_hf(dir.path("hf"), dir.path("out")); }).find("not valid JSON"), std::string::npos);
}

TEST(GgufExport, ReadsBackWithEveryKeyAndTensor) {
  test::ScratchDir dir;
  SavedModel saved(dir);
  export_gguf(saved.run, dir.path("m.gguf"), torch::kFloat16);
  const GgufFile f(dir.path("m.gguf"));
  const ModelConfig& c = saved.model->config();
  EXPECT_EQ(std::get<std::string>(f.value("general.architecture")), "llama");
  EXPECT_EQ(std::get<uint32_t>(f.value("llama.block_count")), c.n_layers);
  EXPECT_EQ(std::get<uint32_t>(f.value("llama.attention.head_count_kv")), c.n_kv_heads);
  EXPECT_EQ(std::get<uint32_t>(f.value("llama.feed_forward_length")), c.ffn_dim());
  EXPECT_EQ(std::get<std::vector<std::string>>(f.value("tokenizer.ggml.tokens")).size(), 259u);
  EXPECT_EQ(f.tensors().size(), saved.model->parameter_list().size());
  for (const auto& [name, p] : saved.model->parameter_list()) {
    auto got = f.load(gguf_tensor_name(name));
    if (name.find("q_proj") != std::string::npos) got = rope_rows_to_pairs(got, c.n_heads, true);
    if (name.find("k_proj") != std::string::npos) got = rope_rows_to_pairs(got, c.n_kv_heads, true);
    const auto want = p.dim() == 1 ? p.detach() : p.detach().to(torch::kFloat16);
    EXPECT_TRUE(torch::equal(got, want)) << name << " (norms stay f32, matrices f16)";
  }
}

TEST(GgufExport, PairOrderIsTheRotationLlamaCppApplies) {
  // Rotate-half RoPE on rows [x | y] equals adjacent-pair RoPE on the interleaved rows: the
  // permutation maps first-half row i to row 2i and second-half row i to row 2i + 1.
  const auto w = torch::arange(2 * 8 * 3, torch::kFloat32).view({16, 3});  // 2 heads of dim 8
  const auto p = rope_rows_to_pairs(w, 2);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_TRUE(torch::equal(p[h * 8 + 2 * i], w[h * 8 + i]));
      EXPECT_TRUE(torch::equal(p[h * 8 + 2 * i + 1], w[h * 8 + 4 + i]));
    }
  }
  EXPECT_TRUE(torch::equal(rope_rows_to_pairs(p, 2, true), w));
}

// A small valid GGUF file, then damaged copies of it.
class GgufDamage : public ::testing::Test {
 protected:
  void SetUp() override {
    write_gguf(path("ok.gguf"), {{"general.architecture", std::string("llama")}, {"n", uint32_t{7}}},
               {{"t", {2, 3}, torch::kFloat32, 0}, {"u", {4}, torch::kFloat16, 0}},
               [](size_t i) { return i == 0 ? torch::ones({2, 3}) : torch::zeros({4}, torch::kFloat16); });
    std::ifstream in(path("ok.gguf"), std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string path(const std::string& name) const { return dir_.path(name); }
  // The error reading a copy of the file with `edit` applied.
  std::string error_after(const std::function<void(std::string&)>& edit) {
    std::string b = bytes_;
    edit(b);
    std::ofstream(path("bad.gguf"), std::ios::binary | std::ios::trunc) << b;
    return test::error_of([&] { GgufFile f(path("bad.gguf")); });
  }
  size_t find(const std::string& what) const { return bytes_.find(what); }

  test::ScratchDir dir_;
  std::string bytes_;
};

template <class T>
void put(std::string& b, size_t at, T v) {
  std::memcpy(&b[at], &v, sizeof v);
}

TEST_F(GgufDamage, EveryDamageIsAClearError) {
  const GgufFile ok(path("ok.gguf"));
  EXPECT_TRUE(torch::equal(ok.load("t"), torch::ones({2, 3})));
  EXPECT_EQ(std::get<uint32_t>(ok.value("n")), 7u);
  EXPECT_NE(error_after([](std::string& b) { b[0] = 'X'; }).find("magic"), std::string::npos);
  EXPECT_NE(error_after([](std::string& b) { put<uint32_t>(b, 4, 9); }).find("version 9"), std::string::npos);
  EXPECT_NE(error_after([](std::string& b) { put<uint64_t>(b, 8, uint64_t{1} << 40); }).find("tensor count"), std::string::npos);
  EXPECT_NE(error_after([](std::string& b) { b.resize(30); }).find("truncated"), std::string::npos);
  // The last tensor, 8 bytes, is followed by 24 bytes of alignment padding: cut into its data.
  EXPECT_NE(error_after([](std::string& b) { b.resize(b.size() - 28); }).find("outside the file"), std::string::npos);
  const size_t key = find("general.architecture");
  EXPECT_NE(error_after([&](std::string& b) { put<uint64_t>(b, key - 8, uint64_t{1} << 50); }).find("runs past the end"),
            std::string::npos);
  EXPECT_NE(error_after([&](std::string& b) { put<uint32_t>(b, key + 20, 99); }).find("value type 99"), std::string::npos);
  // Tensor "t": name length, name, n_dims, dims, type, offset.
  const size_t t = find(std::string("\x01\0\0\0\0\0\0\0t", 9)) + 9;
  EXPECT_NE(error_after([&](std::string& b) { put<uint32_t>(b, t, 5); }).find("5 dimensions"), std::string::npos);
  EXPECT_NE(error_after([&](std::string& b) { put<uint64_t>(b, t + 4, 0); }).find("implausible dimension"), std::string::npos);
  EXPECT_NE(error_after([&](std::string& b) { put<uint32_t>(b, t + 20, 2); }).find("ggml type 2"), std::string::npos);
  EXPECT_NE(error_after([&](std::string& b) { put<uint64_t>(b, t + 24, 3); }).find("not aligned"), std::string::npos);
  EXPECT_NE(error_after([&](std::string& b) { put<uint64_t>(b, t + 24, 1 << 20); }).find("outside the file"), std::string::npos);
  // "u" placed over "t".
  const size_t u = find(std::string("\x01\0\0\0\0\0\0\0u", 9)) + 9;
  EXPECT_NE(error_after([&](std::string& b) { put<uint64_t>(b, u + 16, 0); }).find("overlap"), std::string::npos);
}

}  // namespace
}  // namespace loom
