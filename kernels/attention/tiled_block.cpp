#include "kernels/attention/tiled_block.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>

#include "kernels/attention/tile_gemm.h"
#include "kernels/attention/tile_softmax.h"
#include "kernels/vector_clones.h"
#include "runtime/core/precision.h"

namespace loom {
namespace {

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

// The mask's rows as plain arrays, so that the host loops below keep them in registers.
struct MaskRows {
  explicit MaskRows(const AttentionMask& m)
      : q_pos(m.q_pos.contiguous()), q_doc(m.q_doc.contiguous()), k_pos(m.k_pos.contiguous()),
        k_doc(m.k_doc.contiguous()), causal(m.causal), window(m.window) {}

  torch::Tensor q_pos, q_doc, k_pos, k_doc;
  bool causal;
  int64_t window;
};

// Which of `count` keys query i sees (pos, doc of the query; kp, kd of the keys), into seen.
LOOM_VECTOR_CLONES
void see_keys(int64_t pos, int64_t doc, const int64_t* kp, const int64_t* kd, int64_t count, bool causal,
              int64_t window, uint8_t* seen) {
  const int64_t newest = causal ? 0 : std::numeric_limits<int64_t>::min();
  const int64_t oldest = window > 0 ? window : std::numeric_limits<int64_t>::max();
  const uint8_t real = doc >= 0;
#pragma omp simd
  for (int64_t j = 0; j < count; ++j) {
    const int64_t age = pos - kp[j];
    seen[j] = real & (kd[j] == doc) & (age >= newest) & (age < oldest);
  }
}

// The part of a tile that is computed: queries [r0, r1) and keys [c0, c1), counted from the
// tile's first row and column, and the pairs in it that the mask hides, [(r1 - r0) * g, c1 - c0]
// in the row order of group_rows (undefined where it hides none).
struct TileBlock {
  int64_t r0, r1, c0, c1;
  torch::Tensor hidden;
};

// The pairs of strip rows [r0, r1) x columns [c0, c1) that `seen` (tk per row, from row s0) leaves
// hidden, each row repeated for the g heads of a group; undefined if none is.
torch::Tensor hidden_pairs(const std::vector<uint8_t>& seen, const TileBlock& b, int64_t s0, int64_t tk, int64_t g) {
  auto hidden = torch::empty({(b.r1 - b.r0) * g, b.c1 - b.c0}, torch::kBool);
  bool* h = hidden.data_ptr<bool>();
  uint8_t any = 0;
  for (int64_t i = b.r0; i < b.r1; ++i)
    for (int64_t head = 0; head < g; ++head)
      for (int64_t j = b.c0; j < b.c1; ++j, ++h) {
        const uint8_t hide = seen[static_cast<size_t>((i - s0) * tk + j)] ^ 1;
        *h = hide != 0;
        any |= hide;
      }
  return any ? hidden : torch::Tensor();
}

// A partial tile as strips of `strip` queries, each cut to the box of keys its queries see, with
// that box's mask built on the host (from tensor ops it cost a quarter of a 32-wide tile). On a
// causal diagonal tile four strips compute 5/8 of it where the whole tile computed twice the
// visible half: at 1K tokens the whole diagonal tiles had been a fifth of the forward's products.
std::vector<TileBlock> partial_blocks(const MaskRows& m, const TileSpan& q, const TileSpan& k, int64_t g, int64_t strip) {
  std::vector<TileBlock> blocks;
  std::vector<uint8_t> seen;
  const int64_t tk = k.end - k.begin;
  for (int64_t s0 = q.begin; s0 < q.end; s0 += strip) {
    const int64_t s1 = std::min(s0 + strip, q.end);
    seen.resize(static_cast<size_t>((s1 - s0) * tk));
    TileBlock b{s1, s0, tk, 0, {}};
    for (int64_t i = s0; i < s1; ++i) {
      uint8_t* const row = seen.data() + (i - s0) * tk;
      see_keys(m.q_pos.data_ptr<int64_t>()[i], m.q_doc.data_ptr<int64_t>()[i], m.k_pos.data_ptr<int64_t>() + k.begin,
               m.k_doc.data_ptr<int64_t>() + k.begin, tk, m.causal, m.window, row);
      int64_t first = 0, last = tk;
      while (first < tk && row[first] == 0) ++first;
      if (first == tk) continue;
      while (row[last - 1] == 0) --last;
      b.r0 = std::min(b.r0, i), b.r1 = i + 1, b.c0 = std::min(b.c0, first), b.c1 = std::max(b.c1, last);
    }
    if (b.r1 <= b.r0) continue;  // no query of the strip sees a key of the tile
    b.hidden = hidden_pairs(seen, b, s0, tk, g);
    b.r0 -= q.begin, b.r1 -= q.begin;
    blocks.push_back(std::move(b));
  }
  return blocks;
}

std::vector<TileBlock> tile_blocks(TileKind kind, const MaskRows& m, const TileSpan& q, const TileSpan& k, int64_t g,
                                   int64_t tile) {
  if (kind == TileKind::kEmpty) return {};
  if (kind == TileKind::kFull) return {{0, q.end - q.begin, 0, k.end - k.begin, {}}};
  return partial_blocks(m, q, k, g, std::max<int64_t>(1, tile / 4));
}

// Rows of a query tile with the GQA group folded in, query by query: [Hq, N, d] -> [Hkv, tq * g, d],
// row i * g + h holding query i of head h of the group. One bmm against the shared K/V heads then
// serves the whole group, and a run of queries is a run of rows.
torch::Tensor group_rows(const torch::Tensor& t, int64_t hkv, const TileSpan& q) {
  const int64_t g = t.size(0) / hkv;
  return t.view({hkv, g, t.size(1), -1}).slice(2, q.begin, q.end).transpose(1, 2).reshape({hkv, g * (q.end - q.begin), -1});
}

// The inverse: a query tile's rows [Hkv, tq * g, d] written into the whole [Hq, N, d].
void scatter_rows(const torch::Tensor& whole, const torch::Tensor& rows, const TileSpan& q) {
  const int64_t hkv = rows.size(0), g = whole.size(0) / hkv, tq = q.end - q.begin;
  whole.view({hkv, g, whole.size(1), -1}).slice(2, q.begin, q.end).copy_(rows.view({hkv, tq, g, -1}).transpose(1, 2));
}

// A block's rows of a query tile's tensor [Hkv, tq * g, ...] and its columns of a key tensor [Hkv, N, ...].
torch::Tensor block_rows(const torch::Tensor& t, const TileBlock& b, int64_t g) { return t.slice(1, b.r0 * g, b.r1 * g); }
torch::Tensor block_keys(const torch::Tensor& t, const TileSpan& k, const TileBlock& b) {
  return t.slice(1, k.begin + b.c0, k.begin + b.c1);
}

// q * scale, k and v in the accumulation dtype, contiguous: the arithmetic below then runs in one
// dtype with in-place updates (a no-op copy for float32/float64 inputs).
struct Operands {
  torch::Tensor q_scaled, k, v;
};

Operands prepare(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  const auto acc = accumulation_dtype(q.scalar_type());
  return {(q.to(acc) * scale).contiguous(), k.to(acc).contiguous(), v.to(acc).contiguous()};
}

// The most negative finite value of t's dtype: a row's softmax shift while it has seen no key.
double lowest_finite(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? std::numeric_limits<double>::lowest()
                                            : static_cast<double>(std::numeric_limits<float>::lowest());
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

BlockOutput tiled_forward(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
                          const AttentionMask& mask, double scale, int64_t tile) {
  const auto [q, k, v] = prepare(q_in, k_in, v_in, scale);
  const auto opts = q.options();
  const int64_t hq = q.size(0), hkv = k.size(0), g = hq / hkv, d = q.size(2);
  const double inf = std::numeric_limits<double>::infinity();
  BlockOutput result = empty_partial(q);
  torch::Tensor &out = result.out, &lse = result.lse;
  const auto k_tiles = tile_spans(mask.k_pos, mask.k_doc, tile);
  const MaskRows rows_of_mask(mask);
  const double lowest = lowest_finite(q);

  for_each_query_tile(tile_spans(mask.q_pos, mask.q_doc, tile), q.is_cpu(), [&](const TileSpan& qs) {
    const auto qt = group_rows(q, hkv, qs);
    const int64_t rows = qt.size(1);
    auto row_max = torch::full({hkv, rows}, -inf, opts);
    auto row_sum = torch::zeros({hkv, rows}, opts);
    auto o = torch::zeros({hkv, rows, d}, opts);
    for (const auto& ks : k_tiles)
      for (const TileBlock& b : tile_blocks(classify(qs, ks, mask), rows_of_mask, qs, ks, g, tile)) {
        const auto p = tile_product(block_rows(qt, b, g), false, block_keys(k, ks, b), true);
        softmax_step(p, b.hidden, block_rows(row_max, b, g), block_rows(row_sum, b, g), block_rows(o, b, g), lowest);
        tile_gemm(p, false, block_keys(v, ks, b), false, block_rows(o, b, g));
      }
    const auto seen = row_sum > 0;
    const auto o_final = torch::where(seen.unsqueeze(-1), o / row_sum.clamp_min(1e-300).unsqueeze(-1), torch::zeros_like(o));
    const auto lse_final = torch::where(seen, row_max + row_sum.clamp_min(1e-300).log(), torch::full_like(row_max, -inf));
    scatter_rows(out, o_final, qs);
    scatter_rows(lse.unsqueeze(-1), lse_final.unsqueeze(-1), qs);
  });
  return result;
}

BlockGrads tiled_backward(const torch::Tensor& dout_in, const torch::Tensor& q_in, const torch::Tensor& k_in,
                          const torch::Tensor& v_in, const torch::Tensor& delta_in, const torch::Tensor& lse,
                          const AttentionMask& mask, double scale, int64_t tile, bool kv_grads) {
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
  const MaskRows rows_of_mask(mask);

  for_each_query_tile(tile_spans(mask.q_pos, mask.q_doc, tile), q.is_cpu(), [&](const TileSpan& qs) {
    const auto qt = group_rows(q, hkv, qs);
    const auto dot = group_rows(dout, hkv, qs);
    // Contiguous once per query tile: every block's fused softmax steps read them as rows.
    const auto lse_t = group_rows(safe_lse.unsqueeze(-1), hkv, qs).contiguous();
    const auto delta_t = group_rows(delta.unsqueeze(-1), hkv, qs).contiguous();
    auto dq_t = torch::zeros_like(dot);
    for (const auto& ks : k_tiles)
      for (const TileBlock& b : tile_blocks(classify(qs, ks, mask), rows_of_mask, qs, ks, g, tile)) {
        const auto kt = block_keys(k, ks, b), vt = block_keys(v, ks, b);
        const auto qb = block_rows(qt, b, g), dob = block_rows(dot, b, g);
        const auto p = tile_product(qb, false, kt, true);
        exp_shifted(p, b.hidden, block_rows(lse_t, b, g));
        if (kv_grads) tile_gemm(p, true, dob, false, block_keys(dv.mine(), ks, b));
        const auto ds = tile_product(dob, false, vt, true);
        softmax_grad(ds, block_rows(delta_t, b, g), p);
        tile_gemm(ds, false, kt, false, block_rows(dq_t, b, g), scale);
        if (kv_grads) tile_gemm(ds, true, qb, false, block_keys(dk.mine(), ks, b));  // qb carries the scale already
      }
    scatter_rows(dq, dq_t, qs);
  });
  if (!kv_grads) return {dq, {}, {}};
  return {dq, dk.total(), dv.total()};
}

}  // namespace loom
