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

// Why generation ended. `context_full`: prompt plus new tokens reached model.max_seq_len, the
// longest sequence the model was configured (and its RoPE trained) for; going on would feed it
// positions it has never seen.
enum class GenerateStop { max_new, stop_token, context_full };

struct Generated {
  std::vector<int64_t> tokens;  // only the new ones
  GenerateStop stop = GenerateStop::max_new;
};

// Refuses a prompt that leaves no room for one new token within model.max_seq_len.
Generated generate(Llama& model, const std::vector<int64_t>& prompt, const GenerateOptions& options);

}  // namespace loom
