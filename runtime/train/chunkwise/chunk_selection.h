// Which chunks the reverse sweep of chunk-wise backprop visits, and how it weights them.
//
// SeCO visits every chunk with weight 1 and its gradient is exact. SpaCO visits a random subset.
// The gradient of the sequence loss is a sum over chains: the loss of chunk j, back through the
// K/V of earlier chunks i1 > i2 > ... > im (each hop a chunk that read the next one's keys), into
// the parameters used in the last chunk of the chain. The sweep computes a chain only when every
// chunk on it is visited, and then multiplies it by loss_scale * seed_scale^m (the loss weight once,
// the K/V seed weight at each hop). Everything is linear in these products, so
//   E[estimate] = sum over chains of P(all m + 1 chunks visited) * loss_scale * seed_scale^m * chain.
// - bernoulli: chunks are kept independently with probability q, so P = q^(m+1); with
//   loss_scale = seed_scale = 1/q every chain's weight is exactly 1: the estimator is unbiased
//   for chains of every length (tests/test_chunkwise.cpp checks this by enumerating all patterns).
// - fixed (the paper's Algorithm 2): t distinct chunks of k, so P = t(t-1)...(t-m)/(k(k-1)...(k-m)).
//   The paper scales each hop by min(k/t, cap) and the loss by nothing: chains of one chunk come out
//   scaled by t/k (an overall factor the learning rate absorbs), chains of two or more are biased
//   relative to them, even without the cap. `none` applies no factor at all.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/core/config.h"

namespace loom {

struct ChunkSelection {
  std::vector<bool> keep;   // per chunk: visited by the reverse sweep
  double loss_scale = 1;    // multiplies the loss of every visited chunk
  double seed_scale = 1;    // multiplies the K/V gradient each visited chunk passes on
  int64_t kept() const;
};

// SeCO: every chunk, weight 1.
ChunkSelection all_chunks(int64_t chunks);

// SpaCO's weights for `chunks` chunks, with `keep` left empty (set by sample_chunks, or by a test).
ChunkSelection spaco_weights(const SpacoConfig& spaco, int64_t chunks);

// The number of chunks `fixed` sampling keeps: round(budget x chunks), at least 1.
int64_t fixed_count(const SpacoConfig& spaco, int64_t chunks);

// A SpaCO selection drawn from a generator keyed by (seed, key): the trainer uses the step and the
// micro-batch's index in the global batch, so a resumed run, on any number of data-parallel ranks,
// draws the same chunks as an uninterrupted one without storing generator state.
ChunkSelection sample_chunks(const SpacoConfig& spaco, int64_t chunks, uint64_t seed, uint64_t key);

}  // namespace loom
