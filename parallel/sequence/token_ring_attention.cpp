#include "parallel/sequence/token_ring_attention.h"

#include "parallel/sequence/sequence_parallel_context.h"

namespace loom {
namespace {

// A visiting query shard is computed in this many row pieces, and each piece's partial leaves for
// its owner as soon as it is ready: only the last piece of the last step returns after the compute
// has ended (whole-shard returns left a whole shard's partial exposed at the end of the forward and
// again, as dQ, at the end of the backward). A piece none of whose rows see a key is neither
// computed nor returned: the half of a zigzag shard that has wrapped round sees nothing.
constexpr int64_t kReturnPieces = 4;

// `rows` cut into up to kReturnPieces consecutive pieces.
std::vector<RowRange> return_pieces(const RowRange& rows) {
  const int64_t pieces = std::min(kReturnPieces, rows.count);
  std::vector<RowRange> ranges;
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t begin = p * rows.count / pieces;
    ranges.push_back({rows.begin + begin, (p + 1) * rows.count / pieces - begin});
  }
  return ranges;
}

std::vector<torch::Tensor> rows_of(const std::vector<torch::Tensor>& ts, const RowRange& rows) {
  std::vector<torch::Tensor> out;
  for (const auto& t : ts) out.push_back(t.narrow(1, rows.begin, rows.count));
  return out;
}

// Query shards travel to rank - 1 (as in TokenRing's causal zigzag schedule) and carry only the rows some rank ahead sees. A
// shard first meets the keys of earlier ranks, which all its rows see, then, wrapped round, those
// of later ranks, which only its second zigzag chunk sees: it sheds its first half on the way.
// (Towards rank + 1 the wrapped stops would come last and every shard but rank 0's travel whole.)
Route query_route(const SpContext& c) {
  const int64_t n = c.layout.ranks;
  std::vector<std::vector<RowRange>> rows(n, std::vector<RowRange>(n));
  for (int64_t owner = 0; owner < n; ++owner) {
    rows[owner][0] = {0, c.layout.shard_length()};
    RowRange ahead;
    for (int64_t step = n - 1; step > 0; --step) {
      ahead = span_of(ahead, c.layout.query_rows_seen(owner, ((owner - step) % n + n) % n));
      rows[owner][step] = ahead;
    }
  }
  return {-1, [rows](int64_t owner, int64_t step) { return rows[owner][step]; }};
}

// The partials of one step travelling home: what this rank sent (kept alive until sent) and the
// buffer its own partial's pieces land in (rows no piece reached keep their initial, empty value).
struct Returns {
  std::vector<CommHandle> handles;
  std::vector<torch::Tensor> sent, received;

  void wait() {
    for (auto& h : handles) h.wait();
  }
};

// Computes the block of the query shard this rank holds at `step` against its own keys, piece by
// piece: `compute(mask, rows)` gives the partial of `rows` of the visiting tensors. Each piece goes
// to the shard's owner in one exchange with the same piece of this rank's own partial, computed by
// the rank holding this rank's shard, arriving into `received` (initial values: an empty partial);
// every rank issues its i-th exchange after its i-th piece, so no exchange waits on a later one.
// Returns what is in flight.
template <typename Compute>
Returns compute_and_return(const SpContext& c, const Route& route, int64_t step, std::vector<torch::Tensor> received,
                           const Compute& compute) {
  const int owner = route.owner_at(c, step), from = c.peer(route.direction * step);
  const AttentionMask visiting = c.layout.mask(owner, c.rank()), mine = c.layout.mask(c.rank(), from);
  const int64_t held = route.rows(owner, step).begin;
  const auto outgoing = return_pieces(c.layout.query_rows_seen(owner, c.rank()));
  const auto incoming = return_pieces(c.layout.query_rows_seen(c.rank(), from));
  Returns ret;
  ret.received = std::move(received);
  bool expecting = false;
  for (size_t i = 0; i < std::max(outgoing.size(), incoming.size()); ++i) {
    std::vector<P2POp> ops;
    if (i < outgoing.size()) {
      const AttentionMask piece = query_rows(visiting, outgoing[i]);
      if (visible_pairs(piece) > 0)
        for (const auto& t : compute(piece, RowRange{outgoing[i].begin - held, outgoing[i].count})) {
          ret.sent.push_back(t);
          ops.push_back(send_to(owner, t));
        }
    }
    if (i < incoming.size() && visible_pairs(query_rows(mine, incoming[i])) > 0) {
      expecting = true;
      for (const auto& t : rows_of(ret.received, incoming[i])) ops.push_back(recv_from(from, t));
    }
    if (!ops.empty()) ret.handles.push_back(c.back->exchange(ops));
  }
  if (!expecting) ret.received.clear();
  return ret;
}

// Step s: this rank holds (rows of) the query shard of rank (r + s) mod N and computes it against
// its own K/V.
BlockOutput token_ring_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const SpContext& c) {
  const int64_t n = c.layout.ranks, r = c.rank();
  const Route route = query_route(c);
  BlockOutput own = empty_partial(q);
  Returns returns;
  auto merge_returned = [&] {
    returns.wait();
    if (!returns.received.empty()) own = merge_partials(own, {returns.received[0], returns.received[1]});
    returns = {};
  };
  std::vector<torch::Tensor> visiting = {q}, arriving;
  for (int64_t s = 0; s < n; ++s) {
    CommHandle pass = pass_shard(c, route, s, visiting, {q}, arriving);
    if (s == 0) {
      if (c.layout.visible(r, r)) own = merge_partials(own, block_forward(q, k, v, c.layout.mask(r, r), c.scale));
    } else {
      const BlockOutput empty = empty_partial(q);
      Returns now = compute_and_return(c, route, s, {empty.out, empty.lse}, [&](const AttentionMask& piece, const RowRange& rows) {
        const BlockOutput b = block_forward(visiting[0].narrow(1, rows.begin, rows.count), k, v, piece, c.scale);
        return std::vector<torch::Tensor>{b.out, b.lse};
      });
      merge_returned();  // the previous step's returns travelled while this step computed
      returns = std::move(now);
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
    returns.wait();
    if (!returns.received.empty()) dq += returns.received[0];
    returns = {};
  };
  // What a query shard's backward needs travels with it: D = rowsum(dO * O) rather than O.
  const std::vector<torch::Tensor> mine = {q, dout.contiguous(), output_delta(dout, result.out), result.lse};
  const Route route = query_route(c);
  std::vector<torch::Tensor> visiting = mine, arriving;
  for (int64_t s = 0; s < n; ++s) {
    CommHandle pass = pass_shard(c, route, s, visiting, mine, arriving);
    auto backward = [&](const std::vector<torch::Tensor>& in, const AttentionMask& mask) {
      const BlockGrads g = block_backward_from_delta(in[1], in[0], k, v, in[2], in[3], mask, c.scale);
      dk += g.dk;
      dv += g.dv;
      return g.dq;
    };
    if (s == 0) {
      if (c.layout.visible(r, r)) dq += backward(mine, c.layout.mask(r, r));
    } else {
      Returns now = compute_and_return(c, route, s, {torch::zeros_like(dq)}, [&](const AttentionMask& piece, const RowRange& rows) {
        return std::vector<torch::Tensor>{backward(rows_of(visiting, rows), piece)};
      });
      add_returned();
      returns = std::move(now);
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
