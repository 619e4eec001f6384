#include "kernels/attention/partials.h"

#include <limits>

#include "runtime/core/precision.h"

namespace loom {

BlockOutput empty_partial(const torch::Tensor& q) {
  const auto options = q.options().dtype(accumulation_dtype(q.scalar_type()));
  return {torch::zeros(q.sizes(), options), torch::full({q.size(0), q.size(1)}, -std::numeric_limits<double>::infinity(), options)};
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

torch::Tensor output_delta(const torch::Tensor& dout, const torch::Tensor& out) {
  return (dout.to(out.scalar_type()) * out).sum(-1);
}

}  // namespace loom
