// Sequence-parallel sliding-window attention by halo exchange (LaCT's window attention with
// parallel.sp > 1). A query sees at most `window` earlier keys of its document, so a rank needs
// from the other ranks only the key rows its queries can see: with the zigzag layout and a window
// no longer than a chunk, the last window - 1 rows of the chunk before each of its two chunks, from
// its two ring neighbours. Every rank knows every shard's positions and documents, so both ends of
// each transfer compute the same row lists without asking. The bytes grow with the window, not
// with the sequence, unlike ring or token_ring over a windowed mask (which move whole shards round
// the ring and only skip the arithmetic).
//
// Forward: the halo rows travel while the rank attends over its own keys; the halo block is merged
// in by log-sum-exp. Backward: the halo is gathered again (it is small, and this keeps the saved
// state to q, k, v, out, lse like the ring algorithms) while the rank computes its own block's
// gradients; the halo rows' dK/dV go back to their owners, which add them to their own.
//
// Shapes as ring_attention: this rank's shard of `layout`, q [Hq, n, d], k/v [Hkv, n, d]. Exact for
// any layout and mask; it pays off for windows (without one the halo is every earlier key row of
// the document, an all-gather). `sp` must outlive the backward.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "parallel/sequence/sequence_layout.h"
#include "parallel/comm/communicator.h"

namespace loom {

torch::Tensor halo_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const SequenceLayout& layout, double scale, Communicator& sp);

// Which key rows travel between rank `rank` and each rank p of the layout (empty for p == rank):
// send[p] are rows of this rank's shard p's queries see, receive[p] rows of p's shard this rank's
// queries see (int64 row indices into the shards, ascending).
struct HaloRows {
  std::vector<torch::Tensor> send, receive;
};
HaloRows halo_rows(const SequenceLayout& layout, int64_t rank);

}  // namespace loom
