#include "parallel/attention/ring_attention.h"

#include "parallel/attention/sequence_parallel_context.h"

namespace loom {
namespace {

// Step s: this rank holds the K/V shard of rank (r - s) mod N and passes it on to r + 1.
BlockOutput ring_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const SpContext& c) {
  const int64_t n = c.layout.ranks, r = c.rank();
  BlockOutput acc = empty_partial(q);
  torch::Tensor kc = k, vc = v;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t source = (r - s + n) % n;
    CommHandle pass;
    torch::Tensor kn, vn;
    if (s + 1 < n) {
      kn = torch::empty_like(kc);
      vn = torch::empty_like(vc);
      pass = c.forward->exchange({send_to(c.next(), kc), send_to(c.next(), vc), recv_from(c.prev(), kn), recv_from(c.prev(), vn)});
    }
    if (c.layout.visible(r, source)) acc = merge_partials(acc, block_forward(q, kc, vc, c.layout.mask(r, source), c.scale));
    pass.wait();
    kc = kn;
    vc = vn;
  }
  return acc;
}

// Step s: this rank holds the K/V shard of rank (r - s) mod N again. The shard's gradient
// accumulator travels one step behind it: the rank adds its block's dK/dV to the accumulator it
// receives from r - 1 and sends the sum on to r + 1; after the last step each accumulator reaches
// its owner. Both transfers run while the next block computes.
BlockGrads ring_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const BlockOutput& result, const SpContext& c) {
  const int64_t n = c.layout.ranks, r = c.rank();
  BlockGrads grads = zero_grads(result, k, v);
  torch::Tensor kc = k, vc = v;
  CommHandle travelling;             // this step's accumulators going to r + 1, the next ones coming from r - 1
  torch::Tensor dk_in, dv_in;        // received: the accumulator of the shard this rank holds next
  std::vector<torch::Tensor> sent;   // kept alive until sent
  for (int64_t s = 0; s < n; ++s) {
    const int64_t source = (r - s + n) % n;
    CommHandle pass;
    torch::Tensor kn, vn;
    if (s + 1 < n) {
      kn = torch::empty_like(kc);
      vn = torch::empty_like(vc);
      pass = c.forward->exchange({send_to(c.next(), kc), send_to(c.next(), vc), recv_from(c.prev(), kn), recv_from(c.prev(), vn)});
    }
    torch::Tensor dk = torch::zeros_like(grads.dk), dv = torch::zeros_like(grads.dv);
    if (c.layout.visible(r, source)) {
      const BlockGrads g = block_backward(dout, q, kc, vc, result.out, result.lse, c.layout.mask(r, source), c.scale);
      grads.dq += g.dq;
      dk = g.dk;
      dv = g.dv;
    }
    travelling.wait();
    if (s > 0) {
      dk += dk_in;
      dv += dv_in;
    }
    sent = {dk, dv};
    dk_in = torch::empty_like(dk);
    dv_in = torch::empty_like(dv);
    travelling = c.forward->exchange({send_to(c.next(), dk), send_to(c.next(), dv), recv_from(c.prev(), dk_in), recv_from(c.prev(), dv_in)});
    pass.wait();
    kc = kn;
    vc = vn;
  }
  travelling.wait();  // the accumulator of this rank's own shard, complete
  grads.dk = dk_in;
  grads.dv = dv_in;
  return grads;
}

}  // namespace

torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const SequenceLayout& layout, double scale, Communicator& sp) {
  return SequenceParallelFn<ring_forward, ring_backward>::apply(q, k, v, SpContext{layout, scale, &sp, &sp});
}

}  // namespace loom
