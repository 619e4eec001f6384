#include "kernels/attention/prefix_attention.h"

namespace loom {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Block 0 is the chunk itself; block i > 0 is prefix chunk i - 1.
std::vector<AttentionMask> block_masks(const torch::Tensor& pos, const torch::Tensor& doc, const tensor_list& k_pos,
                                       const tensor_list& k_doc) {
  std::vector<AttentionMask> masks{AttentionMask::self(pos, doc)};
  for (size_t i = 0; i < k_pos.size(); ++i) masks.push_back({pos, doc, k_pos[i], k_doc[i], true});
  return masks;
}

// Inputs: q, k, v, the prefix keys, the prefix values; then non-differentiable arguments.
struct PrefixAttentionFn : torch::autograd::Function<PrefixAttentionFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, torch::TensorList prefix_k, torch::TensorList prefix_v,
                               const torch::Tensor& pos, const torch::Tensor& doc, const tensor_list& prefix_pos,
                               const tensor_list& prefix_doc, double scale) {
    const auto masks = block_masks(pos, doc, prefix_pos, prefix_doc);
    BlockOutput result = block_forward(q, k, v, masks[0], scale);
    for (size_t i = 0; i < prefix_k.size(); ++i) {
      result = merge_partials(result, block_forward(q, prefix_k[i], prefix_v[i], masks[i + 1], scale));
    }
    tensor_list saved{q, k, v, pos, doc, result.out, result.lse};
    saved.insert(saved.end(), prefix_k.begin(), prefix_k.end());
    saved.insert(saved.end(), prefix_v.begin(), prefix_v.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["prefix_pos"] = prefix_pos;
    ctx->saved_data["prefix_doc"] = prefix_doc;
    ctx->saved_data["scale"] = scale;
    return result.out.to(q.scalar_type());
  }

  // With the merged (out, lse), every block's gradients are exact partial sums (block_attention.h).
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto& q = s[0];
    const auto& out = s[5];
    const auto& lse = s[6];
    const auto prefix_pos = ctx->saved_data["prefix_pos"].toTensorVector();
    const size_t n = prefix_pos.size();
    const auto masks = block_masks(s[3], s[4], prefix_pos, ctx->saved_data["prefix_doc"].toTensorVector());
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto delta = output_delta(grads[0], out);
    const BlockGrads own = block_backward_from_delta(grads[0], q, s[1], s[2], delta, lse, masks[0], scale);
    auto dq = own.dq;
    tensor_list dk(n), dv(n);
    for (size_t i = 0; i < n; ++i) {
      const auto& pk = s[7 + i];
      const auto& pv = s[7 + n + i];
      const bool kv_grads = ctx->needs_input_grad(3 + i) || ctx->needs_input_grad(3 + n + i);
      const BlockGrads g =
          block_backward_from_delta(grads[0], q, pk, pv, delta, lse, masks[i + 1], scale, kDefaultBackwardTile, kv_grads);
      dq = dq + g.dq;
      if (kv_grads) {
        dk[i] = g.dk.to(pk.scalar_type());
        dv[i] = g.dv.to(pv.scalar_type());
      }
    }
    tensor_list result{dq.to(q.scalar_type()), own.dk.to(s[1].scalar_type()), own.dv.to(s[2].scalar_type())};
    result.insert(result.end(), dk.begin(), dk.end());
    result.insert(result.end(), dv.begin(), dv.end());
    result.resize(result.size() + 5);  // pos, doc, prefix_pos, prefix_doc, scale
    return result;
  }
};

}  // namespace

torch::Tensor prefix_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& pos, const torch::Tensor& doc, const std::vector<KeyBlock>& prefix,
                               size_t prefix_count, double scale) {
  tensor_list prefix_k, prefix_v, prefix_pos, prefix_doc;
  for (size_t i = 0; i < prefix_count; ++i) {
    prefix_k.push_back(prefix[i].k);
    prefix_v.push_back(prefix[i].v);
    prefix_pos.push_back(prefix[i].pos);
    prefix_doc.push_back(prefix[i].doc);
  }
  return PrefixAttentionFn::apply(q, k, v, torch::TensorList(prefix_k), torch::TensorList(prefix_v), pos, doc,
                                  prefix_pos, prefix_doc, scale);
}

}  // namespace loom
