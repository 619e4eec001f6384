#include "kernels/attention/fused_block.h"

#include <atomic>

#include "kernels/attention/aten_attention_kernels.h"

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

// A sliding window (causal only) empties the pairs entirely out of it and keeps full the pairs
// entirely in it; on the diagonal FlashAttention applies it.
PairKind pair_kind(const Run& q, const Run& k, const AttentionMask& m) {
  if (q.doc != k.doc) return PairKind::kEmpty;
  if (m.causal && k.first_pos > q.last_pos()) return PairKind::kEmpty;
  if (m.window > 0 && q.first_pos - k.last_pos() >= m.window) return PairKind::kEmpty;
  const bool in_window = m.window == 0 || q.last_pos() - k.first_pos < m.window;
  if ((!m.causal || k.last_pos() <= q.first_pos) && in_window) return PairKind::kFull;
  if (k.first_pos == q.first_pos && k.last_pos() == q.last_pos()) return PairKind::kDiagonal;
  return PairKind::kOther;
}

struct Pair {
  Run q, k;
  bool causal;     // the diagonal: square, identical positions, so top-left and bottom-right agree
  int64_t window;  // > 0: the diagonal under a sliding window (a query sees itself and window - 1 before)
};

// The non-empty (query run, key run) pairs grouped by query run, or nothing if one of them is
// beyond the fused kernels' masks.
std::optional<std::vector<std::vector<Pair>>> plan(const AttentionMask& m) {
  if (m.window > 0 && !LOOM_ATEN_FLASH_WINDOW) return std::nullopt;
  const auto k_runs = runs_of(m.k_pos, m.k_doc);
  std::vector<std::vector<Pair>> by_query_run;
  for (const Run& qr : runs_of(m.q_pos, m.q_doc)) {
    std::vector<Pair> pairs;
    for (const Run& kr : k_runs) {
      const PairKind kind = pair_kind(qr, kr, m);
      if (kind == PairKind::kOther) return std::nullopt;
      const bool diagonal = kind == PairKind::kDiagonal;
      if (kind != PairKind::kEmpty) pairs.push_back({qr, kr, diagonal, diagonal ? m.window : 0});
    }
    by_query_run.push_back(std::move(pairs));
  }
  return by_query_run;
}

// The process-wide choice; -1 until the first use decides the default.
std::atomic<int> chosen_kernel{-1};

// FlashAttention-2 takes every pair the other kernel does not, so it decides what is eligible: head
// dimensions that are multiples of 8 up to 256.
bool eligible(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto t = q.scalar_type();
  return fused_kernel_available(FusedKernel::kFlash) && q.is_cuda() && (t == torch::kBFloat16 || t == torch::kHalf) &&
         k.scalar_type() == t && v.scalar_type() == t && q.size(2) % 8 == 0 && q.size(2) <= 256;
}

// K/V heads repeated for their query heads: both ATen entry points take equal head counts.
torch::Tensor expand_heads(const torch::Tensor& kv, int64_t hq) {
  return kv.size(0) == hq ? kv : kv.repeat_interleave(hq / kv.size(0), 0);
}

// Gradients of the expanded heads summed back onto their K/V head.
torch::Tensor fold_heads(const torch::Tensor& t, int64_t hkv) {
  const int64_t hq = t.size(0);
  return hq == hkv ? t : t.view({hkv, hq / hkv, t.size(1), t.size(2)}).sum(1);
}

// O' = dO * D / rowsum(dO * dO), in float32: rowsum(dO * O') = D.
torch::Tensor output_with_delta(const torch::Tensor& dout, const torch::Tensor& delta) {
  const auto dout_f = dout.to(torch::kFloat32);
  const auto norm2 = (dout_f * dout_f).sum(-1, true).clamp_min(1e-30);
  return dout_f * (delta.to(torch::kFloat32).unsqueeze(-1) / norm2);
}

// The kernels' results in float32, in one pass whatever their strides.
torch::Tensor to_f32(const torch::Tensor& t) { return t.to(torch::kFloat32, false, false, torch::MemoryFormat::Contiguous); }

// The ATen entry point one pair goes to. cuDNN's backward takes head dimensions up to 128 and
// (LibTorch 2.11) refuses s_q = s_kv = 1, and its entry point has no window; such pairs (those with
// a single query or key, whose speed does not matter, among them) go to FlashAttention-2 whichever
// kernel is chosen, windowed pairs through its raw entry point.
enum class EntryPoint { kCudnn, kFlash, kFlashWindow };

EntryPoint entry_for(const Pair& p, int64_t head_dim) {
  if (p.window > 0) return EntryPoint::kFlashWindow;
  const bool single = p.q.end - p.q.begin == 1 || p.k.end - p.k.begin == 1;
  const bool cudnn = fused_kernel() == FusedKernel::kCudnn && fused_kernel_available(FusedKernel::kCudnn);
  return cudnn && !single && head_dim <= 128 ? EntryPoint::kCudnn : EntryPoint::kFlash;
}

#if LOOM_ATEN_FLASH_WINDOW
// [1, H, n, d] <-> the raw flash entry points' [1, n, H, d].
torch::Tensor heads_second(const torch::Tensor& t) { return t.transpose(1, 2); }
#endif

// Rows [begin, end) of a [H, N, d] tensor as the kernels' [1, H, n, d].
torch::Tensor rows(const torch::Tensor& t, int64_t begin, int64_t end) {
  return t.slice(1, begin, end).unsqueeze(0).contiguous();
}

// Attention of one pair of runs: out [H, n, d] and lse [H, n] (float32, natural log). Without the
// kernels in LibTorch (where nothing is eligible) the calls below compile away, hence maybe_unused.
BlockOutput pair_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const Pair& p,
                         double scale) {
  const auto qr = rows(q, p.q.begin, p.q.end), kr = rows(k, p.k.begin, p.k.end), vr = rows(v, p.k.begin, p.k.end);
  const int64_t n = p.q.end - p.q.begin;
  torch::Tensor o, lse;
  [[maybe_unused]] const EntryPoint entry = entry_for(p, q.size(2));
#if LOOM_ATEN_CUDNN
  if (entry == EntryPoint::kCudnn) {
    const auto r = at::_scaled_dot_product_cudnn_attention(qr, kr, vr, std::nullopt, true, 0.0, p.causal, false, scale);
    o = std::get<0>(r);
    lse = std::get<1>(r);
  }
#endif
#if LOOM_ATEN_FLASH
  if (entry == EntryPoint::kFlash) {
    const auto r = at::_scaled_dot_product_flash_attention(qr, kr, vr, 0.0, p.causal, false, scale);
    o = std::get<0>(r);
    lse = std::get<1>(r);
  }
#endif
#if LOOM_ATEN_FLASH_WINDOW
  if (entry == EntryPoint::kFlashWindow) {
    const auto r = at::_flash_attention_forward(heads_second(qr), heads_second(kr), heads_second(vr), std::nullopt,
                                                std::nullopt, n, n, 0.0, true, false, scale, p.window - 1, 0);
    o = heads_second(std::get<0>(r));
    lse = std::get<1>(r);
  }
#endif
  // cuDNN's statistics are [1, H, n, 1], FlashAttention's lse [1, H, n] (possibly padded).
  return {to_f32(o[0]), to_f32(lse[0].flatten(1).slice(1, 0, n))};
}

BlockGrads pair_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const torch::Tensor& out_like, const torch::Tensor& lse, const Pair& p, double scale) {
  const auto qr = rows(q, p.q.begin, p.q.end), kr = rows(k, p.k.begin, p.k.end), vr = rows(v, p.k.begin, p.k.end);
  const auto dor = rows(dout, p.q.begin, p.q.end), outr = rows(out_like, p.q.begin, p.q.end);
  [[maybe_unused]] const int64_t nq = p.q.end - p.q.begin, nk = p.k.end - p.k.begin;
  const auto lse_rows = lse.slice(1, p.q.begin, p.q.end).unsqueeze(0).contiguous();
  // The random-number state arguments are read only with dropout, which Loom never uses.
  torch::Tensor dq, dk, dv;
  [[maybe_unused]] const EntryPoint entry = entry_for(p, q.size(2));
#if LOOM_ATEN_CUDNN
  if (entry == EntryPoint::kCudnn) {
    const auto i64 = q.options().dtype(torch::kInt64);
    std::tie(dq, dk, dv) = at::_scaled_dot_product_cudnn_attention_backward(
        dor, qr, kr, vr, outr, lse_rows.unsqueeze(-1), torch::zeros({}, i64), torch::zeros({}, i64), torch::Tensor(),
        torch::Tensor(), torch::Tensor(), nq, nk, 0.0, p.causal, scale);
  }
#endif
#if LOOM_ATEN_FLASH
  const auto u64 = q.options().dtype(torch::kUInt64);
  if (entry == EntryPoint::kFlash) {
    std::tie(dq, dk, dv) = at::_scaled_dot_product_flash_attention_backward(
        dor, qr, kr, vr, outr, lse_rows, torch::Tensor(), torch::Tensor(), nq, nk, 0.0, p.causal, torch::empty({2}, u64),
        torch::empty({}, u64), scale);
  }
#endif
#if LOOM_ATEN_FLASH_WINDOW
  if (entry == EntryPoint::kFlashWindow) {
    std::tie(dq, dk, dv) = at::_flash_attention_backward(
        heads_second(dor), heads_second(qr), heads_second(kr), heads_second(vr), heads_second(outr), lse_rows,
        torch::Tensor(), torch::Tensor(), nq, nk, 0.0, true, torch::empty({2}, u64), torch::empty({}, u64), scale,
        p.window - 1, 0);
    dq = heads_second(dq);
    dk = heads_second(dk);
    dv = heads_second(dv);
  }
#endif
  return {dq[0], dk[0], dv[0]};
}

}  // namespace

const char* fused_kernel_name(FusedKernel kernel) { return kernel == FusedKernel::kCudnn ? "cudnn" : "flash"; }

bool fused_kernel_available(FusedKernel kernel) {
  if (kernel == FusedKernel::kFlash) return LOOM_ATEN_FLASH;
  return LOOM_ATEN_CUDNN && torch::cuda::cudnn_is_available();
}

FusedKernel fused_kernel() {
  int kernel = chosen_kernel.load();
  if (kernel < 0) {
    kernel = static_cast<int>(fused_kernel_available(FusedKernel::kCudnn) ? FusedKernel::kCudnn : FusedKernel::kFlash);
    chosen_kernel.store(kernel);
  }
  return static_cast<FusedKernel>(kernel);
}

void set_fused_kernel(FusedKernel kernel) { chosen_kernel.store(static_cast<int>(kernel)); }

std::optional<BlockOutput> fused_block_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                               const AttentionMask& mask, double scale) {
  if (!eligible(q, k, v)) return std::nullopt;
  const auto pairs = plan(mask);
  if (!pairs) return std::nullopt;
  const int64_t hq = q.size(0), n = q.size(1);
  const auto k_all = expand_heads(k, hq), v_all = expand_heads(v, hq);
  std::optional<BlockOutput> result;
  for (const auto& run_pairs : *pairs) {
    if (run_pairs.empty()) continue;
    BlockOutput acc = pair_forward(q, k_all, v_all, run_pairs[0], scale);
    for (size_t i = 1; i < run_pairs.size(); ++i) acc = merge_partials(acc, pair_forward(q, k_all, v_all, run_pairs[i], scale));
    const Run& qr = run_pairs[0].q;
    if (qr.begin == 0 && qr.end == n) return acc;  // one run over every row: nothing to fill around it
    if (!result) result = empty_partial(q);
    result->out.slice(1, qr.begin, qr.end).copy_(acc.out);
    result->lse.slice(1, qr.begin, qr.end).copy_(acc.lse);
  }
  return result ? *result : empty_partial(q);
}

std::optional<BlockGrads> fused_block_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& v, const OutputOrDelta& output, const torch::Tensor& lse,
                                               const AttentionMask& mask, double scale) {
  if (!eligible(q, k, v)) return std::nullopt;
  const auto pairs = plan(mask);
  if (!pairs) return std::nullopt;
  const int64_t hq = q.size(0), hkv = k.size(0), nq = q.size(1), nk = k.size(1);
  const auto dout_c = dout.to(q.scalar_type()).contiguous();
  const auto out_like = (output.out.defined() ? output.out : output_with_delta(dout_c, output.delta)).to(q.scalar_type()).contiguous();
  const auto lse_f = lse.to(torch::kFloat32);
  const auto k_all = expand_heads(k, hq), v_all = expand_heads(v, hq);
  // One pair over every query and key row (one document): its gradients are the block's.
  if (pairs->size() == 1 && (*pairs)[0].size() == 1) {
    const Pair& p = (*pairs)[0][0];
    if (p.q.begin == 0 && p.q.end == nq && p.k.begin == 0 && p.k.end == nk) {
      const BlockGrads g = pair_backward(dout_c, q, k_all, v_all, out_like, lse_f, p, scale);
      return BlockGrads{to_f32(g.dq), fold_heads(to_f32(g.dk), hkv), fold_heads(to_f32(g.dv), hkv)};
    }
  }
  const auto f32 = q.options().dtype(torch::kFloat32);
  auto dq = torch::zeros(q.sizes(), f32);
  auto dk_all = torch::zeros(k_all.sizes(), f32), dv_all = torch::zeros(v_all.sizes(), f32);
  for (const auto& run_pairs : *pairs) {
    for (const Pair& p : run_pairs) {
      const BlockGrads g = pair_backward(dout_c, q, k_all, v_all, out_like, lse_f, p, scale);
      dq.slice(1, p.q.begin, p.q.end).add_(g.dq);
      dk_all.slice(1, p.k.begin, p.k.end).add_(g.dk);
      dv_all.slice(1, p.k.begin, p.k.end).add_(g.dv);
    }
  }
  return BlockGrads{dq, fold_heads(dk_all, hkv), fold_heads(dv_all, hkv)};
}

}  // namespace loom
