#include "kernels/attention/local_attention.h"

namespace loom {
namespace {

struct LocalAttentionFn : torch::autograd::Function<LocalAttentionFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& q_pos,
                               const torch::Tensor& q_doc, const torch::Tensor& k_pos,
                               const torch::Tensor& k_doc, bool causal, int64_t window, double scale) {
    const AttentionMask mask{q_pos, q_doc, k_pos, k_doc, causal, window};
    const BlockOutput result = block_forward(q, k, v, mask, scale);
    ctx->save_for_backward({q, k, v, q_pos, q_doc, k_pos, k_doc, result.out, result.lse});
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["window"] = window;
    ctx->saved_data["scale"] = scale;
    return result.out.to(q.scalar_type());
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const AttentionMask mask{s[3], s[4], s[5], s[6], ctx->saved_data["causal"].toBool(), ctx->saved_data["window"].toInt()};
    const BlockGrads g = block_backward(grads[0], s[0], s[1], s[2], s[7], s[8], mask,
                                        ctx->saved_data["scale"].toDouble());
    return {g.dq.to(s[0].scalar_type()), g.dk.to(s[1].scalar_type()), g.dv.to(s[2].scalar_type()),
            {}, {}, {}, {}, {}, {}, {}};
  }
};

}  // namespace

torch::Tensor local_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const AttentionMask& mask, double scale) {
  return LocalAttentionFn::apply(q, k, v, mask.q_pos, mask.q_doc, mask.k_pos, mask.k_doc, mask.causal, mask.window, scale);
}

}  // namespace loom
