#include "parallel/attention/token_ring_attention.h"

#include "parallel/attention/sequence_parallel_context.h"

namespace loom {
namespace {

// Partial results in flight back to their owners: what this rank sends (kept alive until sent) and
// the buffers for what it receives.
struct Returns {
  CommHandle handle;
  std::vector<torch::Tensor> sent, received;
};

// At step s > 0 this rank returns the partial it computed for the visiting shard of `owner` (if
// any) and receives the partial rank r + s computed for its own queries (if any).
Returns start_returns(const SpContext& c, int64_t step, const std::vector<torch::Tensor>& partial,
                      const std::vector<torch::Tensor>& like) {
  const int owner = c.peer(-step), from = c.peer(step);
  Returns ret;
  std::vector<P2POp> ops;
  ret.sent = partial;
  for (const auto& t : partial) ops.push_back(send_to(owner, t));
  if (c.layout.visible(c.rank(), from)) {
    for (const auto& t : like) {
      ret.received.push_back(torch::empty_like(t));
      ops.push_back(recv_from(from, ret.received.back()));
    }
  }
  ret.handle = c.back->exchange(ops);
  return ret;
}

// Step s: this rank holds the query shard of rank (r - s) mod N and computes it against its own K/V.
BlockOutput token_ring_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const SpContext& c) {
  const int64_t n = c.layout.ranks, r = c.rank();
  const std::vector<int64_t> reach = c.layout.query_reach();
  BlockOutput own = empty_partial(q);
  Returns returns;
  auto merge_returned = [&] {
    returns.handle.wait();
    if (!returns.received.empty()) own = merge_partials(own, {returns.received[0], returns.received[1]});
    returns = {};
  };
  std::vector<torch::Tensor> visiting = {q}, arriving;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t owner = c.peer(-s);
    CommHandle pass = pass_shard(c, reach, s, visiting, {q}, arriving);
    std::vector<torch::Tensor> partial;
    if (c.layout.visible(owner, r)) {
      const BlockOutput b = block_forward(visiting[0], k, v, c.layout.mask(owner, r), c.scale);
      partial = {b.out, b.lse};
    }
    if (s == 0) {
      if (!partial.empty()) own = merge_partials(own, {partial[0], partial[1]});
    } else {
      merge_returned();  // the previous step's returns travelled while this step computed
      returns = start_returns(c, s, partial, {own.out, own.lse});
    }
    pass.wait();
    visiting = arriving;
  }
  merge_returned();
  return own;
}

BlockGrads token_ring_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const BlockOutput& result, const SpContext& c) {
  const int64_t n = c.layout.ranks, r = c.rank();
  BlockGrads grads = zero_grads(result, k, v);
  auto &dq = grads.dq, &dk = grads.dk, &dv = grads.dv;
  Returns returns;
  auto add_returned = [&] {
    returns.handle.wait();
    if (!returns.received.empty()) dq += returns.received[0];
    returns = {};
  };
  // What a query shard's backward needs travels with it: D = rowsum(dO * O) rather than O.
  const std::vector<torch::Tensor> mine = {q, dout.contiguous(), output_delta(dout, result.out), result.lse};
  const std::vector<int64_t> reach = c.layout.query_reach();
  std::vector<torch::Tensor> visiting = mine, arriving;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t owner = c.peer(-s);
    CommHandle pass = pass_shard(c, reach, s, visiting, mine, arriving);
    std::vector<torch::Tensor> partial;
    if (c.layout.visible(owner, r)) {
      const BlockGrads g =
          block_backward_from_delta(visiting[1], visiting[0], k, v, visiting[2], visiting[3], c.layout.mask(owner, r), c.scale);
      dk += g.dk;
      dv += g.dv;
      partial = {g.dq};
    }
    if (s == 0) {
      if (!partial.empty()) dq += partial[0];
    } else {
      add_returned();
      returns = start_returns(c, s, partial, {dq});
    }
    pass.wait();
    visiting = arriving;
  }
  add_returned();
  return grads;
}

}  // namespace

torch::Tensor token_ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const SequenceLayout& layout, double scale, Communicator& forward, Communicator& back) {
  return SequenceParallelFn<token_ring_forward, token_ring_backward>::apply(q, k, v, SpContext{layout, scale, &forward, &back});
}

}  // namespace loom
