#include "parallel/tensor/reduce_add_norm.h"

#include "kernels/add_rms_norm.h"
#include "runtime/core/precision.h"

namespace loom {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Rows padded with zeros to `rows`.
torch::Tensor padded(const torch::Tensor& t, int64_t rows) {
  if (t.size(0) == rows) return t.contiguous();
  return torch::cat({t, torch::zeros({rows - t.size(0), t.size(1)}, t.options())});
}

// Summed in float32 or wider whatever the rows' dtype (as TokenWeave's kernel accumulates), then
// rounded back once.
torch::Tensor reduce_scatter_rows(const torch::Tensor& full, Communicator& tp) {
  const auto wide = full.to(accumulation_dtype(full.scalar_type())).contiguous();
  auto mine = torch::empty({full.size(0) / tp.size(), full.size(1)}, wide.options());
  tp.reduce_scatter(wide, mine, ReduceOp::kSum).wait();
  return mine.to(full.scalar_type());
}

torch::Tensor all_gather_rows(const torch::Tensor& mine, Communicator& tp) {
  auto full = torch::empty({mine.size(0) * tp.size(), mine.size(1)}, mine.options());
  tp.all_gather(mine.contiguous(), full).wait();
  return full;
}

struct ReduceAddNormFn : torch::autograd::Function<ReduceAddNormFn> {
  // `residual` is empty at the embedding's boundary (autograd takes no undefined inputs).
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& partial, const torch::Tensor& residual,
                             const torch::Tensor& gamma, double eps, Communicator* tp) {
    const int64_t n = partial.size(0), rows = (n + tp->size() - 1) / tp->size();
    const bool has_residual = residual.numel() > 0;
    const auto s = reduce_scatter_rows(padded(partial, rows * tp->size()), *tp);
    const AddNorm f = add_rms_norm(has_residual ? residual : torch::Tensor(), s, gamma, eps);
    ctx->save_for_backward({f.sum, f.rstd, gamma});
    ctx->saved_data["tp"] = reinterpret_cast<int64_t>(tp);
    ctx->saved_data["rows"] = n;
    ctx->saved_data["has_residual"] = has_residual;
    return {f.sum, all_gather_rows(f.normed, *tp).narrow(0, 0, n)};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto& tp = *reinterpret_cast<Communicator*>(ctx->saved_data["tp"].toInt());
    const int64_t n = ctx->saved_data["rows"].toInt(), rows = saved[0].size(0);
    const AddNorm f{saved[0], {}, saved[1]};
    const auto& gamma = saved[2];
    auto dnormed = grads[1].defined() ? reduce_scatter_rows(padded(grads[1], rows * tp.size()), tp)
                                      : torch::zeros_like(f.sum);
    const AddNormGrads g = add_rms_norm_backward(f, gamma, dnormed, grads[0]);
    const auto dpartial = all_gather_rows(g.dsum, tp).narrow(0, 0, n);
    const bool has_residual = ctx->saved_data["has_residual"].toBool();
    return {dpartial, has_residual ? g.dsum : torch::Tensor(), g.dweight, {}, {}};
  }
};

}  // namespace

ReducedNorm reduce_add_norm(const torch::Tensor& partial, const torch::Tensor& residual, const torch::Tensor& gamma,
                            double eps, Communicator& tp) {
  const auto out =
      ReduceAddNormFn::apply(partial, residual.defined() ? residual : torch::empty({0}, partial.options()), gamma, eps, &tp);
  return {out[0], out[1]};
}

}  // namespace loom
