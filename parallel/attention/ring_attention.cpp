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

BlockGrads ring_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const BlockOutput& result, const SpContext& c) {
  const int64_t n = c.layout.ranks, r = c.rank();
  BlockGrads grads = zero_grads(result, k, v);
  auto &dq = grads.dq, &dk = grads.dk, &dv = grads.dv;
  torch::Tensor kc = k, vc = v;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t source = (r - s + n) % n;
    if (c.layout.visible(r, source)) {
      const BlockGrads g = block_backward(dout, q, kc, vc, result.out, result.lse, c.layout.mask(r, source), c.scale);
      dq += g.dq;
      dk += g.dk;
      dv += g.dv;
    }
    // The gradient of the visiting shard travels with it; after the last step it reaches its owner.
    auto dkn = torch::empty_like(dk), dvn = torch::empty_like(dv);
    std::vector<P2POp> ops = {send_to(c.next(), dk), send_to(c.next(), dv), recv_from(c.prev(), dkn), recv_from(c.prev(), dvn)};
    torch::Tensor kn, vn;
    if (s + 1 < n) {
      kn = torch::empty_like(kc);
      vn = torch::empty_like(vc);
      for (auto op : {send_to(c.next(), kc), send_to(c.next(), vc), recv_from(c.prev(), kn), recv_from(c.prev(), vn)}) ops.push_back(op);
    }
    c.forward->exchange(ops).wait();
    dk = dkn;
    dv = dvn;
    kc = kn;
    vc = vn;
  }
  return grads;
}

}  // namespace

torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const SequenceLayout& layout, double scale, Communicator& sp) {
  return SequenceParallelFn<ring_forward, ring_backward>::apply(q, k, v, SpContext{layout, scale, &sp, &sp});
}

}  // namespace loom
