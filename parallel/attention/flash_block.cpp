#include "parallel/attention/flash_block.h"

#include <torch/version.h>

// The kernels' C++ signatures used below (9-tuple forward, scale argument, uint64 RNG state) are
// those of LibTorch 2.3 and later.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define LOOM_ATEN_FLASH 1
#else
#define LOOM_ATEN_FLASH 0
#endif

namespace loom {
namespace {

// Rows [begin, end) of one document at consecutive positions first_pos, first_pos + 1, ...
struct Run {
  int64_t begin, end, doc, first_pos;
  int64_t last_pos() const { return first_pos + (end - begin) - 1; }
};

std::vector<Run> runs_of(const torch::Tensor& pos, const torch::Tensor& doc) {
  const auto p = pos.accessor<int64_t, 1>();
  const auto d = doc.accessor<int64_t, 1>();
  std::vector<Run> runs;
  for (int64_t i = 0; i < pos.size(0); ++i) {
    if (d[i] < 0) continue;
    if (!runs.empty() && runs.back().end == i && runs.back().doc == d[i] && p[i] == p[i - 1] + 1) {
      runs.back().end = i + 1;
    } else {
      runs.push_back({i, i + 1, d[i], p[i]});
    }
  }
  return runs;
}

enum class PairKind { kEmpty, kFull, kDiagonal, kOther };

PairKind pair_kind(const Run& q, const Run& k, bool causal) {
  if (q.doc != k.doc) return PairKind::kEmpty;
  if (!causal || k.last_pos() <= q.first_pos) return PairKind::kFull;
  if (k.first_pos > q.last_pos()) return PairKind::kEmpty;
  if (k.first_pos == q.first_pos && k.last_pos() == q.last_pos()) return PairKind::kDiagonal;
  return PairKind::kOther;
}

struct Pair {
  Run q, k;
  bool causal;  // the diagonal: square, identical positions, so top-left and bottom-right agree
};

// The non-empty (query run, key run) pairs grouped by query run, or nothing if one of them is
// beyond FlashAttention's masks.
std::optional<std::vector<std::vector<Pair>>> plan(const AttentionMask& m) {
  if (m.window > 0) return std::nullopt;  // SDPA's flash entry point has no window
  const auto k_runs = runs_of(m.k_pos, m.k_doc);
  std::vector<std::vector<Pair>> by_query_run;
  for (const Run& qr : runs_of(m.q_pos, m.q_doc)) {
    std::vector<Pair> pairs;
    for (const Run& kr : k_runs) {
      const PairKind kind = pair_kind(qr, kr, m.causal);
      if (kind == PairKind::kOther) return std::nullopt;
      if (kind != PairKind::kEmpty) pairs.push_back({qr, kr, kind == PairKind::kDiagonal});
    }
    by_query_run.push_back(std::move(pairs));
  }
  return by_query_run;
}

bool eligible(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto t = q.scalar_type();
  return LOOM_ATEN_FLASH && q.is_cuda() && (t == torch::kBFloat16 || t == torch::kHalf) && k.scalar_type() == t &&
         v.scalar_type() == t && q.size(2) % 8 == 0 && q.size(2) <= 256;
}

// K/V heads repeated for their query heads: FlashAttention-2 in ATen takes equal head counts.
torch::Tensor expand_heads(const torch::Tensor& kv, int64_t hq) { return kv.repeat_interleave(hq / kv.size(0), 0); }

#if LOOM_ATEN_FLASH
// Rows [begin, end) of a [H, N, d] tensor as FlashAttention's [1, H, n, d].
torch::Tensor rows(const torch::Tensor& t, int64_t begin, int64_t end) {
  return t.slice(1, begin, end).unsqueeze(0).contiguous();
}

BlockOutput flash_pair_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const Pair& p,
                               double scale) {
  auto [o, lse, cum_q, cum_k, max_q, max_k, rng, unused, debug] = at::_scaled_dot_product_flash_attention(
      rows(q, p.q.begin, p.q.end), rows(k, p.k.begin, p.k.end), rows(v, p.k.begin, p.k.end), 0.0, p.causal, false, scale);
  return {o[0].to(torch::kFloat32), lse[0].slice(-1, 0, p.q.end - p.q.begin).to(torch::kFloat32)};
}

BlockGrads flash_pair_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& out_like, const torch::Tensor& lse,
                               const Pair& p, double scale) {
  const auto u64 = q.options().dtype(torch::kUInt64);
  const auto [dq, dk, dv] = at::_scaled_dot_product_flash_attention_backward(
      rows(dout, p.q.begin, p.q.end), rows(q, p.q.begin, p.q.end), rows(k, p.k.begin, p.k.end),
      rows(v, p.k.begin, p.k.end), rows(out_like, p.q.begin, p.q.end), lse.slice(1, p.q.begin, p.q.end).unsqueeze(0).contiguous(),
      torch::Tensor(), torch::Tensor(), p.q.end - p.q.begin, p.k.end - p.k.begin, 0.0, p.causal, torch::empty({2}, u64),
      torch::empty({}, u64), scale);  // RNG state: read only with dropout
  return {dq[0], dk[0], dv[0]};
}
#else
BlockOutput flash_pair_forward(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const Pair&, double) {
  throw std::logic_error("flash attention is not compiled into this LibTorch build");
}
BlockGrads flash_pair_backward(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                               const torch::Tensor&, const torch::Tensor&, const Pair&, double) {
  throw std::logic_error("flash attention is not compiled into this LibTorch build");
}
#endif

}  // namespace

bool flash_kernels_compiled() { return LOOM_ATEN_FLASH; }

std::optional<BlockOutput> flash_block_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                               const AttentionMask& mask, double scale) {
  if (!eligible(q, k, v)) return std::nullopt;
  const auto pairs = plan(mask);
  if (!pairs) return std::nullopt;
  const int64_t hq = q.size(0), n = q.size(1), d = q.size(2);
  const auto f32 = q.options().dtype(torch::kFloat32);
  BlockOutput result{torch::zeros({hq, n, d}, f32), torch::full({hq, n}, -std::numeric_limits<double>::infinity(), f32)};
  const auto k_all = expand_heads(k, hq), v_all = expand_heads(v, hq);
  for (const auto& run_pairs : *pairs) {
    if (run_pairs.empty()) continue;
    BlockOutput acc = flash_pair_forward(q, k_all, v_all, run_pairs[0], scale);
    for (size_t i = 1; i < run_pairs.size(); ++i) acc = merge_partials(acc, flash_pair_forward(q, k_all, v_all, run_pairs[i], scale));
    const Run& qr = run_pairs[0].q;
    result.out.slice(1, qr.begin, qr.end).copy_(acc.out);
    result.lse.slice(1, qr.begin, qr.end).copy_(acc.lse);
  }
  return result;
}

std::optional<BlockGrads> flash_block_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& v, const torch::Tensor& delta, const torch::Tensor& lse,
                                               const AttentionMask& mask, double scale) {
  if (!eligible(q, k, v)) return std::nullopt;
  const auto pairs = plan(mask);
  if (!pairs) return std::nullopt;
  const int64_t hq = q.size(0), hkv = k.size(0);
  const auto f32 = q.options().dtype(torch::kFloat32);
  const auto dout_c = dout.to(q.scalar_type()).contiguous();
  const auto dout_f = dout_c.to(torch::kFloat32);
  const auto norm2 = (dout_f * dout_f).sum(-1, true).clamp_min(1e-30);
  const auto out_like = (dout_f * (delta.to(torch::kFloat32).unsqueeze(-1) / norm2)).to(q.scalar_type());
  const auto lse_f = lse.to(torch::kFloat32);
  const auto k_all = expand_heads(k, hq), v_all = expand_heads(v, hq);
  auto dq = torch::zeros(q.sizes(), f32);
  auto dk_all = torch::zeros(k_all.sizes(), f32), dv_all = torch::zeros(v_all.sizes(), f32);
  for (const auto& run_pairs : *pairs) {
    for (const Pair& p : run_pairs) {
      const BlockGrads g = flash_pair_backward(dout_c, q, k_all, v_all, out_like, lse_f, p, scale);
      dq.slice(1, p.q.begin, p.q.end).add_(g.dq);
      dk_all.slice(1, p.k.begin, p.k.end).add_(g.dk);
      dv_all.slice(1, p.k.begin, p.k.end).add_(g.dv);
    }
  }
  const auto fold = [&](const torch::Tensor& t) { return t.view({hkv, hq / hkv, t.size(1), t.size(2)}).sum(1); };
  return BlockGrads{dq, fold(dk_all), fold(dv_all)};
}

}  // namespace loom
