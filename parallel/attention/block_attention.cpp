#include "parallel/attention/block_attention.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <map>
#include <numeric>

#include "parallel/attention/flash_block.h"
#include "parallel/attention/tile_gemm.h"
#include "parallel/attention/tile_softmax.h"
#include "runtime/core/accumulation_dtype.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

using torch::indexing::Slice;

// Position and document ranges of one tile, read once so that tiles can be skipped or taken
// whole without building their mask.
struct TileSpan {
  int64_t begin, end;
  int64_t pos_min, pos_max, doc_min, doc_max;
};

std::vector<TileSpan> tile_spans(const torch::Tensor& pos, const torch::Tensor& doc, int64_t tile) {
  const auto p = pos.accessor<int64_t, 1>();
  const auto d = doc.accessor<int64_t, 1>();
  std::vector<TileSpan> spans;
  for (int64_t b = 0; b < pos.size(0); b += tile) {
    TileSpan s{b, std::min(b + tile, pos.size(0)), p[b], p[b], d[b], d[b]};
    for (int64_t i = b; i < s.end; ++i) {
      s.pos_min = std::min(s.pos_min, p[i]);
      s.pos_max = std::max(s.pos_max, p[i]);
      s.doc_min = std::min(s.doc_min, d[i]);
      s.doc_max = std::max(s.doc_max, d[i]);
    }
    spans.push_back(s);
  }
  return spans;
}

enum class TileKind { kEmpty, kFull, kPartial };

TileKind classify(const TileSpan& q, const TileSpan& k, const AttentionMask& m) {
  if (q.doc_max < 0 || k.doc_max < 0) return TileKind::kEmpty;  // padding only
  if (q.doc_max < k.doc_min || k.doc_max < q.doc_min) return TileKind::kEmpty;
  if (m.causal && k.pos_min > q.pos_max) return TileKind::kEmpty;
  if (m.window > 0 && q.pos_min - k.pos_max >= m.window) return TileKind::kEmpty;
  const bool one_doc = q.doc_min == q.doc_max && k.doc_min == k.doc_max && q.doc_min == k.doc_min;
  const bool in_window = m.window == 0 || q.pos_max - k.pos_min < m.window;
  if (one_doc && in_window && (!m.causal || k.pos_max <= q.pos_min)) return TileKind::kFull;
  return TileKind::kPartial;
}

// [tq, tk] pairs of one partial tile that the mask hides, built on the host in one pass: positions
// and documents live there, and built from tensor ops this mask cost a quarter of a 32-wide tile.
torch::Tensor hidden_pairs(const AttentionMask& m, const TileSpan& q, const TileSpan& k) {
  const auto qp = m.q_pos.accessor<int64_t, 1>(), qd = m.q_doc.accessor<int64_t, 1>();
  const auto kp = m.k_pos.accessor<int64_t, 1>(), kd = m.k_doc.accessor<int64_t, 1>();
  const int64_t tq = q.end - q.begin, tk = k.end - k.begin;
  auto hidden = torch::empty({tq, tk}, torch::kBool);
  bool* h = hidden.data_ptr<bool>();
  for (int64_t i = 0; i < tq; ++i) {
    const int64_t pos = qp[q.begin + i], doc = qd[q.begin + i];
    for (int64_t j = 0; j < tk; ++j) {
      const int64_t age = pos - kp[k.begin + j];
      h[i * tk + j] = doc < 0 || kd[k.begin + j] != doc || (m.causal && age < 0) || (m.window > 0 && age >= m.window);
    }
  }
  return hidden;
}

// Scores [heads, tq, tk] set to -inf where `hidden` [tq, tk] says so, in place on the host.
template <typename T>
void hide_on_host(torch::Tensor& s, const torch::Tensor& hidden) {
  const bool* h = hidden.data_ptr<bool>();
  const int64_t pairs = hidden.numel(), heads = s.numel() / pairs;
  T* const scores = s.data_ptr<T>();
  for (int64_t head = 0; head < heads; ++head)
    for (int64_t p = 0; p < pairs; ++p)
      if (h[p]) scores[head * pairs + p] = -std::numeric_limits<T>::infinity();
}

void hide_masked(torch::Tensor& s, const AttentionMask& m, const TileSpan& q, const TileSpan& k) {
  const auto hidden = hidden_pairs(m, q, k);
  if (!s.is_cpu()) {
    s.view({-1, q.end - q.begin, k.end - k.begin}).masked_fill_(hidden.to(s.device()), -std::numeric_limits<double>::infinity());
  } else if (s.scalar_type() == torch::kFloat64) {
    hide_on_host<double>(s, hidden);
  } else {
    hide_on_host<float>(s, hidden);
  }
}

// Rows of a query tile with the GQA group folded in: [Hq, N, d] -> [Hkv, g * tq, d], so one bmm
// against the shared K/V heads serves every query head of the group.
torch::Tensor group_rows(const torch::Tensor& t, int64_t hkv, const TileSpan& q) {
  const int64_t g = t.size(0) / hkv;
  return t.view({hkv, g, t.size(1), -1}).slice(2, q.begin, q.end).reshape({hkv, g * (q.end - q.begin), -1});
}

// Scores of one tile from pre-scaled queries, -inf where masked.
torch::Tensor tile_scores(const torch::Tensor& qt, const torch::Tensor& kt, const AttentionMask& m,
                          const TileSpan& q, const TileSpan& k, TileKind kind) {
  auto s = tile_product(qt, false, kt, true);
  if (kind == TileKind::kPartial) hide_masked(s, m, q, k);
  return s;
}

// q * scale, k and v in the accumulation dtype, contiguous: the arithmetic below then runs in one
// dtype with in-place updates (a no-op copy for float32/float64 inputs).
struct Operands {
  torch::Tensor q_scaled, k, v;
};

Operands prepare(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  const auto acc = accumulation_dtype(q);
  return {(q.to(acc) * scale).contiguous(), k.to(acc).contiguous(), v.to(acc).contiguous()};
}

void check_shapes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const AttentionMask& m) {
  check(q.dim() == 3 && k.dim() == 3 && v.sizes() == k.sizes(), "block attention: q [Hq,Nq,d], k and v [Hkv,Nk,d] expected");
  check(q.size(2) == k.size(2) && q.size(0) % k.size(0) == 0, "block attention: head dims differ or Hkv does not divide Hq");
  check(m.q_pos.size(0) == q.size(1) && m.k_pos.size(0) == k.size(1), "block attention: mask does not match the rows");
}

// The most negative finite value of t's dtype: a row's softmax shift while it has seen no key.
double lowest_finite(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? std::numeric_limits<double>::lowest()
                                            : static_cast<double>(std::numeric_limits<float>::lowest());
}

// Sorted positions per document of the rows that have one (padding, document -1, has none).
std::map<int64_t, std::vector<int64_t>> positions_by_doc(const torch::Tensor& pos, const torch::Tensor& doc) {
  std::map<int64_t, std::vector<int64_t>> by_doc;
  const auto p = pos.accessor<int64_t, 1>(), d = doc.accessor<int64_t, 1>();
  for (int64_t i = 0; i < pos.size(0); ++i)
    if (d[i] >= 0) by_doc[d[i]].push_back(p[i]);
  for (auto& [id, positions] : by_doc) std::sort(positions.begin(), positions.end());
  return by_doc;
}

// How many keys each query row sees.
std::vector<int64_t> pairs_per_query(const AttentionMask& m) {
  const auto keys_by_doc = positions_by_doc(m.k_pos, m.k_doc);
  std::vector<int64_t> pairs(m.q_pos.size(0), 0);
  const auto qp = m.q_pos.accessor<int64_t, 1>(), qd = m.q_doc.accessor<int64_t, 1>();
  for (int64_t i = 0; i < m.q_pos.size(0); ++i) {
    auto it = keys_by_doc.find(qd[i]);
    if (qd[i] < 0 || it == keys_by_doc.end()) continue;
    const auto& pos = it->second;
    const auto last = m.causal ? std::upper_bound(pos.begin(), pos.end(), qp[i]) : pos.end();
    const auto first = m.window > 0 ? std::lower_bound(pos.begin(), pos.end(), qp[i] - m.window + 1) : pos.begin();
    pairs[i] = std::max<int64_t>(0, last - first);
  }
  return pairs;
}

// Query tiles are independent in the forward and own their dq rows in the backward, so on the CPU
// they are spread over the intra-op threads, each tile's ops then running on one thread: split
// within a tile instead, the small matmuls and elementwise ops ran no faster on 2 threads than on 1.
// Tiles go first, last, second, second to last, ..., so that the contiguous runs parallel_for hands
// the threads carry about the same causal work. Grad mode follows the caller onto the threads.
template <class Fn>
void for_each_query_tile(const std::vector<TileSpan>& tiles, bool on_cpu, const Fn& fn) {
  std::vector<size_t> order;
  for (size_t lo = 0, hi = tiles.size(); lo < hi;) {
    order.push_back(lo++);
    if (lo < hi) order.push_back(--hi);
  }
  const bool grad = torch::GradMode::is_enabled();
  const auto run = [&](int64_t begin, int64_t end) {
    const torch::AutoGradMode mode(grad);
    for (int64_t i = begin; i < end; ++i) fn(tiles[order[i]]);
  };
  const auto count = static_cast<int64_t>(order.size());
  if (on_cpu) at::parallel_for(0, count, 1, run);
  else run(0, count);
}

// dK or dV summed over query tiles that run on different threads: one accumulator per thread that
// takes part, added up at the end (the sum's grouping then depends on the thread count alone).
class PerThreadSum {
 public:
  PerThreadSum(std::vector<int64_t> shape, const torch::TensorOptions& opts)
      : shape_(std::move(shape)), opts_(opts), parts_(static_cast<size_t>(at::get_num_threads())) {}

  torch::Tensor& mine() {
    auto& part = parts_.at(static_cast<size_t>(at::get_thread_num()));
    if (!part.defined()) part = torch::zeros(shape_, opts_);
    return part;
  }

  torch::Tensor total() const {
    torch::Tensor sum;
    for (const auto& part : parts_)
      if (part.defined()) sum = sum.defined() ? sum.add_(part) : part;
    return sum.defined() ? sum : torch::zeros(shape_, opts_);
  }

 private:
  std::vector<int64_t> shape_;
  torch::TensorOptions opts_;
  std::vector<torch::Tensor> parts_;
};

}  // namespace

AttentionMask AttentionMask::self(const torch::Tensor& positions, const torch::Tensor& doc_ids, bool causal) {
  return {positions, doc_ids, positions, doc_ids, causal};
}

BlockOutput block_forward(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
                          const AttentionMask& mask, double scale, int64_t tile) {
  check_shapes(q_in, k_in, v_in, mask);
  if (auto flash = flash_block_forward(q_in, k_in, v_in, mask, scale)) return *flash;
  const auto [q, k, v] = prepare(q_in, k_in, v_in, scale);
  const auto opts = q.options();
  const int64_t hq = q.size(0), hkv = k.size(0), g = hq / hkv, d = q.size(2), n = q.size(1);
  const double inf = std::numeric_limits<double>::infinity();
  auto out = torch::zeros({hq, n, d}, opts);
  auto lse = torch::full({hq, n}, -inf, opts);
  const auto k_tiles = tile_spans(mask.k_pos, mask.k_doc, tile);
  const double lowest = lowest_finite(q);

  for_each_query_tile(tile_spans(mask.q_pos, mask.q_doc, tile), q.is_cpu(), [&](const TileSpan& qs) {
    const auto qt = group_rows(q, hkv, qs);
    const int64_t rows = qt.size(1);
    auto row_max = torch::full({hkv, rows}, -inf, opts);
    auto row_sum = torch::zeros({hkv, rows}, opts);
    auto o = torch::zeros({hkv, rows, d}, opts);
    for (const auto& ks : k_tiles) {
      const TileKind kind = classify(qs, ks, mask);
      if (kind == TileKind::kEmpty) continue;
      auto p = tile_scores(qt, k.slice(1, ks.begin, ks.end), mask, qs, ks, kind);
      softmax_step(p, row_max, row_sum, o, lowest);
      tile_gemm(p, false, v.slice(1, ks.begin, ks.end), false, o);
    }
    const auto seen = row_sum > 0;
    const auto o_final = torch::where(seen.unsqueeze(-1), o / row_sum.clamp_min(1e-300).unsqueeze(-1), torch::zeros_like(o));
    const auto lse_final = torch::where(seen, row_max + row_sum.clamp_min(1e-300).log(), torch::full_like(row_max, -inf));
    const int64_t tq = qs.end - qs.begin;
    out.view({hkv, g, n, d}).slice(2, qs.begin, qs.end).copy_(o_final.view({hkv, g, tq, d}));
    lse.view({hkv, g, n}).slice(2, qs.begin, qs.end).copy_(lse_final.view({hkv, g, tq}));
  });
  return {out, lse};
}

torch::Tensor output_delta(const torch::Tensor& dout, const torch::Tensor& out) {
  return (dout.to(out.scalar_type()) * out).sum(-1);
}

BlockGrads block_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& out, const torch::Tensor& lse, const AttentionMask& mask, double scale,
                          int64_t tile) {
  return block_backward_from_delta(dout, q, k, v, output_delta(dout, out), lse, mask, scale, tile);
}

BlockGrads block_backward_from_delta(const torch::Tensor& dout_in, const torch::Tensor& q_in, const torch::Tensor& k_in,
                                     const torch::Tensor& v_in, const torch::Tensor& delta_in, const torch::Tensor& lse,
                                     const AttentionMask& mask, double scale, int64_t tile, bool kv_grads) {
  check_shapes(q_in, k_in, v_in, mask);
  if (auto flash = flash_block_backward(dout_in, q_in, k_in, v_in, delta_in, lse, mask, scale)) {
    if (!kv_grads) flash->dk = flash->dv = torch::Tensor();
    return *flash;
  }
  const auto [q, k, v] = prepare(q_in, k_in, v_in, scale);
  const auto opts = q.options();
  const int64_t hq = q.size(0), hkv = k.size(0), g = hq / hkv, d = q.size(2), n = q.size(1);
  const auto dout = dout_in.to(opts.dtype()).contiguous();
  // D_i = rowsum(dO * O) stands in for sum_j P_ij (dO_i . v_j); empty rows get lse 0 so P = 0.
  const auto delta = delta_in.to(opts.dtype());
  const auto safe_lse = torch::where(torch::isinf(lse), torch::zeros_like(lse), lse).to(opts.dtype()).contiguous();
  auto dq = torch::zeros({hq, n, d}, opts);
  PerThreadSum dk({hkv, k.size(1), d}, opts), dv({hkv, k.size(1), d}, opts);
  const auto k_tiles = tile_spans(mask.k_pos, mask.k_doc, tile);

  for_each_query_tile(tile_spans(mask.q_pos, mask.q_doc, tile), q.is_cpu(), [&](const TileSpan& qs) {
    const auto qt = group_rows(q, hkv, qs);
    const auto dot = group_rows(dout, hkv, qs);
    // Contiguous once per query tile: every key tile's fused softmax steps read them as rows.
    const auto lse_t = group_rows(safe_lse.unsqueeze(-1), hkv, qs).contiguous();
    const auto delta_t = group_rows(delta.unsqueeze(-1), hkv, qs).contiguous();
    auto dq_t = torch::zeros_like(dot);
    for (const auto& ks : k_tiles) {
      const TileKind kind = classify(qs, ks, mask);
      if (kind == TileKind::kEmpty) continue;
      const auto kt = k.slice(1, ks.begin, ks.end), vt = v.slice(1, ks.begin, ks.end);
      auto p = tile_scores(qt, kt, mask, qs, ks, kind);
      exp_shifted(p, lse_t);
      if (kv_grads) tile_gemm(p, true, dot, false, dv.mine().slice(1, ks.begin, ks.end));
      auto ds = tile_product(dot, false, vt, true);
      softmax_grad(ds, delta_t, p);
      tile_gemm(ds, false, kt, false, dq_t, scale);
      if (kv_grads) tile_gemm(ds, true, qt, false, dk.mine().slice(1, ks.begin, ks.end));  // qt carries the scale already
    }
    const int64_t tq = qs.end - qs.begin;
    dq.view({hkv, g, n, d}).slice(2, qs.begin, qs.end).copy_(dq_t.view({hkv, g, tq, d}));
  });
  if (!kv_grads) return {dq, {}, {}};
  return {dq, dk.total(), dv.total()};
}

BlockOutput merge_partials(const BlockOutput& a, const BlockOutput& b) {
  const auto a_empty = torch::isinf(a.lse), b_empty = torch::isinf(b.lse);
  // Placeholders keep the formulas finite on empty rows; torch::where picks the right side after.
  const auto la = torch::where(a_empty, torch::zeros_like(a.lse), a.lse);
  const auto lb = torch::where(b_empty, torch::zeros_like(b.lse), b.lse);
  const auto w = torch::sigmoid(lb - la).unsqueeze(-1);
  auto out = a.out - w * (a.out - b.out);
  auto lse = la - torch::log_sigmoid(la - lb);
  out = torch::where(a_empty.unsqueeze(-1), b.out, torch::where(b_empty.unsqueeze(-1), a.out, out));
  lse = torch::where(a_empty, b.lse, torch::where(b_empty, a.lse, lse));
  return {out, lse};
}

int64_t visible_pairs(const AttentionMask& m) {
  const auto pairs = pairs_per_query(m);
  return std::accumulate(pairs.begin(), pairs.end(), int64_t{0});
}

torch::Tensor visible_queries(const AttentionMask& m) {
  const auto pairs = pairs_per_query(m);
  std::vector<int64_t> rows;
  for (size_t i = 0; i < pairs.size(); ++i)
    if (pairs[i] > 0) rows.push_back(static_cast<int64_t>(i));
  return torch::tensor(rows, torch::kInt64);
}

torch::Tensor visible_keys(const AttentionMask& m) {
  const auto queries_by_doc = positions_by_doc(m.q_pos, m.q_doc);
  std::vector<int64_t> keys;
  const auto kp = m.k_pos.accessor<int64_t, 1>(), kd = m.k_doc.accessor<int64_t, 1>();
  for (int64_t j = 0; j < m.k_pos.size(0); ++j) {
    auto it = queries_by_doc.find(kd[j]);
    if (kd[j] < 0 || it == queries_by_doc.end()) continue;
    // The earliest query at or after the key decides: it is the one most likely inside the window.
    const auto& pos = it->second;
    const auto first = m.causal ? std::lower_bound(pos.begin(), pos.end(), kp[j]) : pos.begin();
    if (first != pos.end() && (m.window == 0 || *first - kp[j] < m.window)) keys.push_back(j);
  }
  return torch::tensor(keys, torch::kInt64);
}

}  // namespace loom
