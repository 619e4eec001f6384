// exp for the CPU's fused elementwise loops: branch-free, so that `omp simd` loops calling it
// vectorise, and accurate to float rounding (relative error < 5e-7 on [-87, 88]). Header-only:
// it must inline into each loop (and into each of the loop's target clones).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/vector_clones.h"

namespace loom {

// exp(x) = 2^n e^r with n = round(x / ln 2) and |r| <= ln(2)/2: Cody-Waite reduction (ln 2 split in
// a part that n multiplies exactly and a remainder), then the Taylor polynomial of degree 7, whose
// truncation error (|r|^8 / 8! < 6e-9) is below float's rounding. 0 below -87 (and for -inf),
// where float's normal range ends; x is clamped at 88 (the callers' arguments are below 1).
inline float vector_exp(float x) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds a float to an integer
  const float low = x < -87.5f ? -87.5f : x;  // not std::max: it returns a reference, and the loop stays scalar
  const float xc = low > 88.0f ? 88.0f : low;
  const float n = (xc * 1.44269504089f + kRound) - kRound;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float poly = 1.0f / 5040;
  poly = poly * r + 1.0f / 720;
  poly = poly * r + 1.0f / 120;
  poly = poly * r + 1.0f / 24;
  poly = poly * r + 1.0f / 6;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return x < -87.0f ? 0.0f : poly * two_n;
}

// Float64 runs (the exactness tests) keep the library's exp.
inline double vector_exp(double x) { return std::exp(x); }

}  // namespace loom
