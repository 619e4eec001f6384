// Sequence-parallel attention, pass-Q ("TokenRing", Wang et al., arXiv 2412.20501): K/V stay on
// their owner; the query shard moves one hop per step (rank r -> r - 1, over `forward`), and the
// partial result (out, lse) each rank computes for a visiting query shard goes straight back to
// that shard's owner over `back`, so both directions of every link carry data and the two streams
// progress independently (one communicator each). Only rows that are seen move: a query shard
// carries the rows some rank ahead of it sees (under causal zigzag it sheds its first chunk once it
// wraps round to later ranks, as in TokenRing's causal zigzag test code), and a visiting shard is computed in row pieces, each
// piece's partial leaving as soon as it is ready (so little of the last step's return is left after
// the compute) unless none of its rows sees a key. Both ends know all of this from the layout.
//
// Backward (absent from the paper's released code): the query shard travels again with dO, lse and
// D = rowsum(dO * O); dK/dV accumulate locally; the dQ partials return to their owners over `back`.
//
// Shapes and dtypes as for ring_attention. `forward` and `back` hold the same ranks in the same
// order and must outlive the backward.
#pragma once
#include <torch/torch.h>

#include "parallel/sequence/sequence_layout.h"
#include "parallel/comm/communicator.h"

namespace loom {

torch::Tensor token_ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const SequenceLayout& layout, double scale, Communicator& forward, Communicator& back);

}  // namespace loom
