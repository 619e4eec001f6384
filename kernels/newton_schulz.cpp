#include "kernels/newton_schulz.h"

#include <array>

#include "runtime/core/error.h"

namespace loom {
namespace {

using Triple = std::array<double, 3>;

// LaCT's per-iteration coefficients (its language-model code), then the classic single triple.
constexpr std::array<Triple, 5> kPerIteration = {{{4.0848, -6.8946, 2.9270},
                                                  {3.9505, -6.3029, 2.6377},
                                                  {3.7418, -5.5913, 2.3037},
                                                  {2.8769, -3.1427, 1.2046},
                                                  {2.8366, -3.0525, 1.2012}}};
constexpr Triple kClassic = {3.4445, -4.7750, 2.0315};

}  // namespace

torch::Tensor newton_schulz(const torch::Tensor& g, NsSchedule schedule, int steps) {
  check(g.dim() >= 2, "newton_schulz needs matrices ([..., m, n])");
  const bool tall = g.size(-2) > g.size(-1);
  auto x = (tall ? g.transpose(-2, -1) : g).to(g.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32);
  x = x / (torch::linalg_norm(x, "fro", {-2, -1}, true) + 1e-7);
  const int n = schedule == NsSchedule::kPerIteration ? static_cast<int>(kPerIteration.size()) : steps;
  for (int i = 0; i < n; ++i) {
    const auto& [a, b, c] = schedule == NsSchedule::kPerIteration ? kPerIteration[i] : kClassic;
    const auto gram = torch::matmul(x, x.transpose(-2, -1));
    x = a * x + torch::matmul(b * gram + c * torch::matmul(gram, gram), x);
  }
  return (tall ? x.transpose(-2, -1) : x).to(g.scalar_type());
}

}  // namespace loom
