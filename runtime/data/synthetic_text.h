// What the synthetic tasks' documents are made of: filler, and how long each document is.
#pragma once
#include <cstdint>
#include <random>
#include <string>

namespace loom {

// Exactly `bytes` bytes of filler: short fixed sentences in random order, the last one cut. It holds
// no digits, ':' or '#', so nothing in it can be mistaken for a value or a marker.
std::string filler_text(std::mt19937_64& rng, int64_t bytes);

// A document length in [min_len, max_len], min_len * (max_len / min_len)^(u^exponent) for u uniform
// in [0, 1): exponent 1 is log-uniform (every power-of-two band of lengths holds a like share of the
// documents), larger exponents crowd them near min_len with a long tail.
int64_t document_length(std::mt19937_64& rng, int64_t min_len, int64_t max_len, int exponent);

}  // namespace loom
