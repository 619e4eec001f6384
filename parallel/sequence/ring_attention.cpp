#include "parallel/sequence/ring_attention.h"

#include "parallel/sequence/sequence_parallel_context.h"

namespace loom {
namespace {

// Ring moves whole K/V shards to rank + 1, each as far as its keys are seen.
Route kv_route(const SpContext& c, const std::vector<int64_t>& reach) {
  const RowRange whole{0, c.layout.shard_length()};
  return {1, [reach, whole](int64_t owner, int64_t step) { return step <= reach[owner] ? whole : RowRange{}; }};
}

// Step s: this rank holds the K/V shard of rank (r - s) mod N, if the shard reaches this far, and
// passes it on to r + 1 if it reaches farther.
BlockOutput ring_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const SpContext& c) {
  const int64_t n = c.layout.ranks, r = c.rank();
  const Route route = kv_route(c, c.layout.key_reach());
  BlockOutput acc = empty_partial(q);
  std::vector<torch::Tensor> held = {k, v}, arriving;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t source = c.peer(-s);
    CommHandle pass = pass_shard(c, route, s, held, {k, v}, arriving);
    if (c.layout.visible(r, source)) acc = merge_partials(acc, block_forward(q, held[0], held[1], c.layout.mask(r, source), c.scale));
    pass.wait();
    held = arriving;
  }
  return acc;
}

// Step s: this rank holds the K/V shard of rank (r - s) mod N again. The owner keeps its own
// block's dK/dV; the shard's accumulator starts at its first visitor and travels one step behind
// it: each rank adds its block's dK/dV to the accumulator it receives from r - 1 and sends the sum
// on with the shard, or, at the shard's last stop, home to its owner. Both transfers run while the
// next block computes.
BlockGrads ring_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const BlockOutput& result, const SpContext& c) {
  const int64_t n = c.layout.ranks, r = c.rank();
  const std::vector<int64_t> reach = c.layout.key_reach();
  const Route route = kv_route(c, reach);
  BlockGrads grads = zero_grads(result, k, v);
  std::vector<torch::Tensor> held = {k, v}, arriving;
  CommHandle travelling;             // accumulators leaving this step, and arriving for the next
  torch::Tensor dk_in, dv_in;        // received: the accumulator of the shard this rank holds next
  torch::Tensor dk_home, dv_home;    // received: this rank's own accumulator, from its last stop
  std::vector<torch::Tensor> sent;   // kept alive until sent
  for (int64_t s = 0; s < n; ++s) {
    const int64_t source = c.peer(-s);
    CommHandle pass = pass_shard(c, route, s, held, {k, v}, arriving);
    torch::Tensor dk, dv;
    if (c.layout.visible(r, source)) {
      const BlockGrads g = block_backward(dout, q, held[0], held[1], result.out, result.lse, c.layout.mask(r, source), c.scale);
      grads.dq += g.dq;
      dk = g.dk;
      dv = g.dv;
    } else {
      dk = torch::zeros_like(grads.dk);
      dv = torch::zeros_like(grads.dv);
    }
    travelling.wait();
    std::vector<P2POp> ops;
    if (s == 0) {
      grads.dk = dk;
      grads.dv = dv;
    } else if (s <= reach[source]) {
      if (s > 1) {
        dk += dk_in;
        dv += dv_in;
      }
      const int to = s < reach[source] ? c.next() : static_cast<int>(source);
      sent = {dk, dv};
      ops.insert(ops.end(), {send_to(to, dk), send_to(to, dv)});
    }
    if (s > 0 && s + 1 <= reach[c.peer(-s - 1)]) {
      dk_in = torch::empty_like(dk);
      dv_in = torch::empty_like(dv);
      ops.insert(ops.end(), {recv_from(c.prev(), dk_in), recv_from(c.prev(), dv_in)});
    }
    if (s > 0 && s == reach[r]) {
      dk_home = torch::empty_like(dk);
      dv_home = torch::empty_like(dv);
      ops.insert(ops.end(), {recv_from(c.peer(s), dk_home), recv_from(c.peer(s), dv_home)});
    }
    travelling = ops.empty() ? CommHandle() : c.forward->exchange(ops);
    pass.wait();
    held = arriving;
  }
  travelling.wait();
  if (dk_home.defined()) {
    grads.dk += dk_home;
    grads.dv += dv_home;
  }
  return grads;
}

}  // namespace

torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const SequenceLayout& layout, double scale, Communicator& sp) {
  return SequenceParallelFn<ring_forward, ring_backward>::apply(q, k, v, SpContext{layout, scale, &sp, &sp});
}

}  // namespace loom
