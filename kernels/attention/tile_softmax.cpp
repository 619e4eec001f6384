#include "kernels/attention/tile_softmax.h"

#include <algorithm>
#include <limits>

#include "kernels/vector_exp.h"

namespace loom {
namespace {

// A row's scores set to -inf where `hidden` (nullable) says so: done row by row, while the row is
// in L1 on its way to the softmax, it costs far less than a pass over the whole tile before.
__attribute__((always_inline)) inline void hide_row(float* s, const bool* hidden, int64_t n) {
  if (hidden == nullptr) return;
  const float inf = std::numeric_limits<float>::infinity();
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) s[j] = hidden[j] ? -inf : s[j];
}

const bool* row_of(const bool* hidden, int64_t r, int64_t n) { return hidden == nullptr ? nullptr : hidden + r * n; }

LOOM_VECTOR_CLONES
void softmax_rows(float* p, const bool* hidden, float* row_max, float* row_sum, float* o, int64_t rows, int64_t tk,
                  int64_t d, float lowest) {
  for (int64_t r = 0; r < rows; ++r) {
    float* pr = p + r * tk;
    hide_row(pr, row_of(hidden, r, tk), tk);
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
void exp_rows(float* s, const bool* hidden, const float* shift, int64_t rows, int64_t tk) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * tk;
    hide_row(sr, row_of(hidden, r, tk), tk);
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

// The fused loops walk rows that are contiguous and packed within each batch (dim 0); batches may
// lie anywhere, so that a run of rows sliced out of a tile's state qualifies.
bool fusable(const torch::Tensor& t) {
  if (!t.is_cpu() || t.scalar_type() != torch::kFloat32 || t.stride(-1) != 1) return false;
  return t.dim() < 3 || t.stride(1) == t.size(2);
}

float* batch(const torch::Tensor& t, int64_t h) { return t.data_ptr<float>() + h * t.stride(0); }

bool fusable_mask(const torch::Tensor& hidden) {
  return !hidden.defined() || (hidden.is_cpu() && hidden.scalar_type() == torch::kBool && hidden.is_contiguous());
}

const bool* mask_data(const torch::Tensor& hidden) { return hidden.defined() ? hidden.data_ptr<bool>() : nullptr; }

void hide(const torch::Tensor& s, const torch::Tensor& hidden) {
  if (hidden.defined()) s.masked_fill_(hidden.to(s.device()), -std::numeric_limits<double>::infinity());
}

}  // namespace

void softmax_step(const torch::Tensor& p, const torch::Tensor& hidden, const torch::Tensor& row_max,
                  const torch::Tensor& row_sum, const torch::Tensor& o, double lowest) {
  if (fusable(p) && fusable_mask(hidden) && fusable(row_max) && fusable(row_sum) && fusable(o)) {
    for (int64_t h = 0; h < p.size(0); ++h)
      softmax_rows(batch(p, h), mask_data(hidden), batch(row_max, h), batch(row_sum, h), batch(o, h), p.size(1),
                   p.size(2), o.size(2), static_cast<float>(lowest));
    return;
  }
  hide(p, hidden);
  const auto shift = torch::maximum(row_max, p.amax(-1)).clamp_min_(lowest);
  p.sub_(shift.unsqueeze(-1)).exp_();
  const auto rescale = (row_max - shift).exp_();
  row_sum.mul_(rescale).add_(p.sum(-1));
  o.mul_(rescale.unsqueeze(-1));
  row_max.copy_(shift);
}

void exp_shifted(const torch::Tensor& s, const torch::Tensor& hidden, const torch::Tensor& lse) {
  if (fusable(s) && fusable_mask(hidden) && fusable(lse)) {
    for (int64_t h = 0; h < s.size(0); ++h) exp_rows(batch(s, h), mask_data(hidden), batch(lse, h), s.size(1), s.size(2));
    return;
  }
  hide(s, hidden);
  s.sub_(lse).exp_();
}

void softmax_grad(const torch::Tensor& dp, const torch::Tensor& delta, const torch::Tensor& p) {
  if (fusable(dp) && fusable(delta) && fusable(p)) {
    for (int64_t h = 0; h < dp.size(0); ++h) grad_rows(batch(dp, h), batch(delta, h), batch(p, h), dp.size(1), dp.size(2));
    return;
  }
  dp.sub_(delta).mul_(p);
}

}  // namespace loom
