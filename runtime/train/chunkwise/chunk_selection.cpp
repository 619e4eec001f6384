#include "runtime/train/chunkwise/chunk_selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace loom {
namespace {

// A double in [0, 1) from the top 53 bits: the same on every standard library, unlike
// std::uniform_real_distribution.
double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

int64_t ChunkSelection::kept() const { return std::count(keep.begin(), keep.end(), true); }

ChunkSelection all_chunks(int64_t chunks) { return {std::vector<bool>(chunks, true), 1, 1}; }

int64_t fixed_count(const SpacoConfig& spaco, int64_t chunks) {
  return std::clamp<int64_t>(std::llround(spaco.budget * static_cast<double>(chunks)), 1, chunks);
}

ChunkSelection spaco_weights(const SpacoConfig& spaco, int64_t chunks) {
  ChunkSelection s;
  if (spaco.sampling == "bernoulli") {
    s.loss_scale = s.seed_scale = 1.0 / spaco.budget;
  } else if (spaco.compensation == "paper") {
    s.seed_scale = std::min(static_cast<double>(chunks) / static_cast<double>(fixed_count(spaco, chunks)), spaco.cap);
  }
  return s;
}

ChunkSelection sample_chunks(const SpacoConfig& spaco, int64_t chunks, uint64_t seed, uint64_t key) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(key),
                    static_cast<uint32_t>(key >> 32)};
  std::mt19937_64 rng(seq);
  ChunkSelection s = spaco_weights(spaco, chunks);
  s.keep.assign(chunks, false);
  if (spaco.sampling == "bernoulli") {
    for (int64_t i = 0; i < chunks; ++i) s.keep[i] = uniform(rng) < spaco.budget;
    return s;
  }
  // The first t entries of a partial Fisher-Yates shuffle: t distinct chunks, uniformly.
  std::vector<int64_t> order(chunks);
  std::iota(order.begin(), order.end(), 0);
  const int64_t t = fixed_count(spaco, chunks);
  for (int64_t i = 0; i < t; ++i) {
    const auto j = i + static_cast<int64_t>(uniform(rng) * static_cast<double>(chunks - i));
    std::swap(order[i], order[j]);
    s.keep[order[i]] = true;
  }
  return s;
}

}  // namespace loom
