// The safetensors reader and writer: bit-exact round trip, and every kind of damage is a clear error.
#include <filesystem>
#include <fstream>

#include "runtime/core/safetensors.h"
#include "tests/test_util.h"

namespace loom {
namespace {

std::string error_of(const std::string& path) {
  return test::error_of([&] { SafetensorsFile f(path); });
}

void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

TEST(Safetensors, RoundTripIsBitExactForEveryDtype) {
  test::ScratchDir dir;
  NamedTensors tensors = {{"a", torch::randn({3, 4}, torch::kFloat64)},
                          {"b", torch::randn({5}).to(torch::kBFloat16)},
                          {"c", torch::arange(6, torch::kInt64).view({2, 3}).t()},  // non-contiguous
                          {"empty", torch::zeros({0, 3})},
                          {"d", torch::randn({2, 2}).to(torch::kFloat16)}};
  write_safetensors(dir.path("t.safetensors"), tensors, {{"format", "pt"}});
  const SafetensorsFile f(dir.path("t.safetensors"));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "c", "empty", "d"}));
  for (const auto& [name, t] : tensors) {
    const auto back = f.load(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(back, t.contiguous())) << name;
  }
  const auto header_len = std::filesystem::file_size(dir.path("t.safetensors")) - (3 * 4 * 8 + 5 * 2 + 6 * 8 + 4 * 2);
  EXPECT_EQ(header_len % 8, 0u) << "data section is 8-byte aligned";
}

TEST(Safetensors, DamagedFilesAreClearErrors) {
  test::ScratchDir dir;
  write_safetensors(dir.path("ok.safetensors"), {{"w", torch::randn({4, 4})}});
  const auto size = std::filesystem::file_size(dir.path("ok.safetensors"));
  std::filesystem::copy_file(dir.path("ok.safetensors"), dir.path("cut.safetensors"));
  std::filesystem::resize_file(dir.path("cut.safetensors"), size - 10);
  EXPECT_NE(error_of(dir.path("cut.safetensors")).find("outside the file"), std::string::npos);

  std::ofstream(dir.path("tiny.safetensors")) << "abc";
  EXPECT_NE(error_of(dir.path("tiny.safetensors")).find("shorter"), std::string::npos);
  write_raw(dir.path("json.safetensors"), "{not json", "");
  EXPECT_NE(error_of(dir.path("json.safetensors")).find("not valid JSON"), std::string::npos);
  write_raw(dir.path("dtype.safetensors"), R"({"w":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}})", "abcd");
  EXPECT_NE(error_of(dir.path("dtype.safetensors")).find("unknown dtype"), std::string::npos);
  write_raw(dir.path("shape.safetensors"), R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd");
  EXPECT_NE(error_of(dir.path("shape.safetensors")).find("does not match"), std::string::npos);
  write_raw(dir.path("gap.safetensors"),
            R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", "abc");
  EXPECT_NE(error_of(dir.path("gap.safetensors")).find("not contiguous"), std::string::npos);
  std::ofstream huge(dir.path("huge.safetensors"), std::ios::binary);
  const uint64_t n = uint64_t{1} << 60;
  huge.write(reinterpret_cast<const char*>(&n), 8);
  huge.close();
  EXPECT_NE(error_of(dir.path("huge.safetensors")).find("implausible"), std::string::npos);
}

}  // namespace
}  // namespace loom
