#include "parallel/sequence/halo_attention.h"

#include "parallel/sequence/sequence_parallel_context.h"

namespace loom {

HaloRows halo_rows(const SequenceLayout& layout, int64_t rank) {
  HaloRows rows;
  const auto none = torch::empty({0}, torch::kInt64);
  for (int64_t p = 0; p < layout.ranks; ++p) {
    rows.send.push_back(p == rank ? none : visible_keys(layout.mask(p, rank)));
    rows.receive.push_back(p == rank ? none : visible_keys(layout.mask(rank, p)));
  }
  return rows;
}

namespace {

// Tensors in flight between this rank and each peer: what it sends (kept alive until sent) and the
// buffers it receives into, per peer.
struct Transfer {
  CommHandle handle;
  std::vector<std::vector<torch::Tensor>> sent, received;
};

// Sends out[p] to each peer p and receives from it, for every tensor of `like`, a tensor of that
// shape with in_rows[p] rows along dim 1 (nothing when in_rows[p] is 0).
Transfer start_transfer(Communicator& comm, std::vector<std::vector<torch::Tensor>> out, const std::vector<int64_t>& in_rows,
                        const std::vector<torch::Tensor>& like) {
  Transfer t{{}, std::move(out), {}};
  std::vector<P2POp> ops;
  for (size_t p = 0; p < t.sent.size(); ++p) {
    const int peer = static_cast<int>(p);
    for (const auto& x : t.sent[p]) ops.push_back(send_to(peer, x));
    t.received.emplace_back();
    if (in_rows[p] == 0) continue;
    for (const auto& x : like) {
      auto shape = x.sizes().vec();
      shape[1] = in_rows[p];
      t.received[p].push_back(torch::empty(shape, x.options()));
      ops.push_back(recv_from(peer, t.received[p].back()));
    }
  }
  t.handle = comm.exchange(ops);
  return t;
}

std::vector<int64_t> row_counts(const std::vector<torch::Tensor>& rows) {
  std::vector<int64_t> counts;
  for (const auto& r : rows) counts.push_back(r.size(0));
  return counts;
}

// Starts sending each peer the rows of this rank's K/V its queries see, and receiving this rank's.
Transfer start_gather(const SpContext& c, const HaloRows& rows, const torch::Tensor& k, const torch::Tensor& v) {
  std::vector<std::vector<torch::Tensor>> out;
  for (const auto& send : rows.send) {
    out.emplace_back();
    if (send.size(0) == 0) continue;
    const auto index = send.to(k.device());
    out.back() = {k.index_select(1, index), v.index_select(1, index)};
  }
  return start_transfer(*c.forward, std::move(out), row_counts(rows.receive), {k, v});
}

// The gathered halo: K/V rows of the other ranks in rank order, and their mask for this rank's queries.
struct Halo {
  torch::Tensor k, v;
  AttentionMask mask;
  int64_t rows() const { return k.size(1); }
};

Halo finish_gather(Transfer& t, const SpContext& c, const HaloRows& rows) {
  t.handle.wait();
  const auto& l = c.layout;
  const int64_t r = c.rank();
  std::vector<torch::Tensor> k, v, pos, doc;
  for (int64_t p = 0; p < l.ranks; ++p) {
    pos.push_back(l.pos[p].index_select(0, rows.receive[p]));
    doc.push_back(l.doc[p].index_select(0, rows.receive[p]));
    if (t.received[p].empty()) continue;
    k.push_back(t.received[p][0]);
    v.push_back(t.received[p][1]);
  }
  if (k.empty()) return {};
  return {torch::cat(k, 1), torch::cat(v, 1), {l.pos[r], l.doc[r], torch::cat(pos), torch::cat(doc), l.causal, l.window}};
}

BlockOutput halo_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const SpContext& c) {
  const int64_t r = c.rank();
  const HaloRows rows = halo_rows(c.layout, r);
  Transfer gather = start_gather(c, rows, k, v);
  BlockOutput acc = empty_partial(q);
  if (c.layout.visible(r, r)) acc = block_forward(q, k, v, c.layout.mask(r, r), c.scale);
  const Halo halo = finish_gather(gather, c, rows);
  if (halo.k.defined()) acc = merge_partials(acc, block_forward(q, halo.k, halo.v, halo.mask, c.scale));
  return acc;
}

BlockGrads halo_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const BlockOutput& result, const SpContext& c) {
  const int64_t r = c.rank();
  const HaloRows rows = halo_rows(c.layout, r);
  Transfer gather = start_gather(c, rows, k, v);
  BlockGrads grads = zero_grads(result, k, v);
  if (c.layout.visible(r, r)) {
    const BlockGrads g = block_backward(dout, q, k, v, result.out, result.lse, c.layout.mask(r, r), c.scale);
    grads.dq += g.dq;
    grads.dk += g.dk;
    grads.dv += g.dv;
  }
  // The halo rows' gradients go back to their owners, in the order the rows came.
  const Halo halo = finish_gather(gather, c, rows);
  std::vector<std::vector<torch::Tensor>> out(c.layout.ranks);
  if (halo.k.defined()) {
    const BlockGrads g = block_backward(dout, q, halo.k, halo.v, result.out, result.lse, halo.mask, c.scale);
    grads.dq += g.dq;
    int64_t offset = 0;
    for (int64_t p = 0; p < c.layout.ranks; ++p) {
      const int64_t n = rows.receive[p].size(0);
      if (n > 0) out[p] = {g.dk.narrow(1, offset, n), g.dv.narrow(1, offset, n)};
      offset += n;
    }
  }
  Transfer returned = start_transfer(*c.forward, std::move(out), row_counts(rows.send), {grads.dk, grads.dv});
  returned.handle.wait();
  for (int64_t p = 0; p < c.layout.ranks; ++p) {
    if (returned.received[p].empty()) continue;
    const auto index = rows.send[p].to(grads.dk.device());
    grads.dk.index_add_(1, index, returned.received[p][0]);
    grads.dv.index_add_(1, index, returned.received[p][1]);
  }
  return grads;
}

}  // namespace

torch::Tensor halo_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const SequenceLayout& layout, double scale, Communicator& sp) {
  return SequenceParallelFn<halo_forward, halo_backward>::apply(q, k, v, SpContext{layout, scale, &sp, &sp});
}

}  // namespace loom
