#include "kernels/attention/block_attention.h"

#include "kernels/attention/fused_block.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

void check_shapes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const AttentionMask& m) {
  check(q.dim() == 3 && k.dim() == 3 && v.sizes() == k.sizes(), "block attention: q [Hq,Nq,d], k and v [Hkv,Nk,d] expected");
  check(q.size(2) == k.size(2) && q.size(0) % k.size(0) == 0, "block attention: head dims differ or Hkv does not divide Hq");
  check(m.q_pos.size(0) == q.size(1) && m.k_pos.size(0) == k.size(1), "block attention: mask does not match the rows");
}

}  // namespace

BlockOutput block_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const AttentionMask& mask, double scale, int64_t tile) {
  check_shapes(q, k, v, mask);
  if (auto fused = fused_block_forward(q, k, v, mask, scale)) return *fused;
  return tiled_forward(q, k, v, mask, scale, tile);
}

BlockGrads block_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& out, const torch::Tensor& lse, const AttentionMask& mask, double scale,
                          int64_t tile) {
  check_shapes(q, k, v, mask);
  if (auto fused = fused_block_backward(dout, q, k, v, {out, {}}, lse, mask, scale)) return *fused;
  return tiled_backward(dout, q, k, v, output_delta(dout, out), lse, mask, scale, tile, true);
}

BlockGrads block_backward_from_delta(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& delta, const torch::Tensor& lse,
                                     const AttentionMask& mask, double scale, int64_t tile, bool kv_grads) {
  check_shapes(q, k, v, mask);
  if (auto fused = fused_block_backward(dout, q, k, v, {{}, delta}, lse, mask, scale)) {
    if (!kv_grads) fused->dk = fused->dv = torch::Tensor();
    return *fused;
  }
  return tiled_backward(dout, q, k, v, delta, lse, mask, scale, tile, kv_grads);
}

}  // namespace loom
