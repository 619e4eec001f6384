// Text generation with a KV cache: the prompt runs once, then each new token costs one step
// against the cached keys and values, never a recomputation of the prefix.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/model/llama.h"

namespace loom {

struct GenerateOptions {
  int64_t max_new = 64;
  double temperature = 0.0;  // 0: greedy
  int64_t stop_token = -1;   // stop after emitting it (e.g. EOS); -1: never
  uint64_t seed = 0;
};

// Returns only the new tokens.
std::vector<int64_t> generate(Llama& model, const std::vector<int64_t>& prompt, const GenerateOptions& options);

}  // namespace loom
