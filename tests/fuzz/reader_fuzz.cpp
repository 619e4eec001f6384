// libFuzzer target for the safetensors and GGUF readers (built with clang and AddressSanitizer +
// UBSan by run_fuzz.sh). Any input must end in a loom::Error or a successful read of every tensor:
// a crash, a sanitizer report or an uncaught exception of another kind is a bug.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "runtime/core/error.h"
#include "runtime/core/safetensors.h"
#include "runtime/export/gguf_file.h"

namespace {

// The readers take paths (they read tensor by tensor from disk), so each input becomes a file.
std::string write_input(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/loom-fuzz-input-" + std::to_string(getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

void read_everything(const std::string& path, bool gguf) {
  if (gguf) {
    const loom::GgufFile f(path);
    for (const auto& t : f.tensors()) f.load(t.name);
  } else {
    const loom::SafetensorsFile f(path);
    for (const auto& name : f.names()) f.load(name);
  }
}

}  // namespace

// Seeds: `reader_fuzz --write-seeds DIR` writes one valid file of each format.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i + 1 < *argc; ++i) {
    if (std::strcmp((*argv)[i], "--write-seeds") != 0) continue;
    const std::string dir = (*argv)[i + 1];
    loom::write_safetensors(dir + "/seed.safetensors", {{"a", torch::ones({2, 3})}, {"b", torch::zeros({4}, torch::kBFloat16)}},
                            {{"format", "pt"}});
    loom::write_gguf(dir + "/seed.gguf", {{"general.architecture", std::string("llama")}, {"n", uint32_t{3}},
                                          {"v", std::vector<std::string>{"x", "y"}}},
                     {{"t", {2, 2}, torch::kFloat32, 0}, {"u", {3}, torch::kFloat16, 0}},
                     [](size_t i) { return i == 0 ? torch::ones({2, 2}) : torch::zeros({3}, torch::kFloat16); });
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool gguf = size >= 4 && std::memcmp(data, "GGUF", 4) == 0;
  try {
    read_everything(write_input(data, size), gguf);
  } catch (const loom::Error&) {
  }
  return 0;
}
