#include "parallel/attention/tile_softmax.h"

#include <algorithm>

#include "kernels/vector_exp.h"

namespace loom {
namespace {

LOOM_VECTOR_CLONES
void softmax_rows(float* p, float* row_max, float* row_sum, float* o, int64_t rows, int64_t tk, int64_t d, float lowest) {
  for (int64_t r = 0; r < rows; ++r) {
    float* pr = p + r * tk;
    float m = row_max[r];
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < tk; ++j) m = pr[j] > m ? pr[j] : m;  // std::max (a reference) stays scalar
    m = std::max(m, lowest);
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < tk; ++j) {
      pr[j] = vector_exp(pr[j] - m);
      sum += pr[j];
    }
    const float rescale = vector_exp(row_max[r] - m);
    row_sum[r] = row_sum[r] * rescale + sum;
    float* orow = o + r * d;
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) orow[c] *= rescale;
    row_max[r] = m;
  }
}

LOOM_VECTOR_CLONES
void exp_rows(float* s, const float* shift, int64_t rows, int64_t tk) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * tk;
    const float m = shift[r];
#pragma omp simd
    for (int64_t j = 0; j < tk; ++j) sr[j] = vector_exp(sr[j] - m);
  }
}

LOOM_VECTOR_CLONES
void grad_rows(float* dp, const float* delta, const float* p, int64_t rows, int64_t tk) {
  for (int64_t r = 0; r < rows; ++r) {
    float* dr = dp + r * tk;
    const float* pr = p + r * tk;
    const float c = delta[r];
#pragma omp simd
    for (int64_t j = 0; j < tk; ++j) dr[j] = (dr[j] - c) * pr[j];
  }
}

bool fusable(const torch::Tensor& t) { return t.is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous(); }

}  // namespace

void softmax_step(torch::Tensor& p, torch::Tensor& row_max, torch::Tensor& row_sum, torch::Tensor& o, double lowest) {
  if (fusable(p) && fusable(row_max) && fusable(row_sum) && fusable(o)) {
    softmax_rows(p.data_ptr<float>(), row_max.data_ptr<float>(), row_sum.data_ptr<float>(), o.data_ptr<float>(),
                 row_max.numel(), p.size(-1), o.size(-1), static_cast<float>(lowest));
    return;
  }
  const auto shift = torch::maximum(row_max, p.amax(-1)).clamp_min_(lowest);
  p.sub_(shift.unsqueeze(-1)).exp_();
  const auto rescale = (row_max - shift).exp_();
  row_sum.mul_(rescale).add_(p.sum(-1));
  o.mul_(rescale.unsqueeze(-1));
  row_max = shift;
}

void exp_shifted(torch::Tensor& s, const torch::Tensor& lse) {
  if (fusable(s) && fusable(lse)) {
    exp_rows(s.data_ptr<float>(), lse.data_ptr<float>(), lse.numel(), s.size(-1));
    return;
  }
  s.sub_(lse).exp_();
}

void softmax_grad(torch::Tensor& dp, const torch::Tensor& delta, const torch::Tensor& p) {
  if (fusable(dp) && fusable(delta) && fusable(p)) {
    grad_rows(dp.data_ptr<float>(), delta.data_ptr<float>(), p.data_ptr<float>(), delta.numel(), dp.size(-1));
    return;
  }
  dp.sub_(delta).mul_(p);
}

}  // namespace loom
