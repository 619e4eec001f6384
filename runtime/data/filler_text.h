// Filler for the synthetic tasks: short fixed sentences in random order. It holds no digits, ':' or
// '#', so nothing in it can be mistaken for a value or a marker.
#pragma once
#include <cstdint>
#include <random>
#include <string>

namespace loom {

// Exactly `bytes` bytes of filler (the last sentence cut).
std::string filler_text(std::mt19937_64& rng, int64_t bytes);

}  // namespace loom
