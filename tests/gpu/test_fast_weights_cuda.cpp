// LaCT's fast-weight chunk loop on the GPU (float32) against the CPU in float64, forward and the
// gradients of its inputs. Skips where no GPU exists.
#include <gtest/gtest.h>

#include "runtime/model/fast_weight_scan.h"
#include "tests/relative_error.h"

namespace loom {
namespace {

TEST(FastWeightScanCuda, MatchesFloat64OnTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(7);
  const int64_t heads = 3, n = 300, d = 64;
  const auto f64 = torch::dtype(torch::kFloat64);
  std::vector<torch::Tensor> base{torch::randn({heads, n, d}, f64) / 8, torch::randn({heads, n, d}, f64) / 8,
                                  torch::randn({heads, n, d}, f64),     torch::rand({3, heads, n}, f64) * 0.1,
                                  torch::rand({heads, n}, f64),         torch::randn({heads, d, d}, f64) / 8,
                                  torch::randn({heads, d, d}, f64) / 8, torch::randn({heads, d, d}, f64) / 8};
  const auto doc = torch::cat({torch::zeros({170}, torch::kInt64), torch::ones({130}, torch::kInt64)});
  auto run = [&](torch::Device device, torch::ScalarType dtype, bool muon) {
    std::vector<torch::Tensor> in;
    for (const auto& t : base) in.push_back(t.to(device, dtype, false, /*copy=*/true).requires_grad_());  // fresh leaves
    const auto out = fast_weight_scan({in[5], in[6], in[7]}, in[0], in[1], in[2], in[3][0], in[3][1], in[3][2], in[4],
                                      doc, {64, muon, true, false});
    (out * out).sum().backward();
    std::vector<torch::Tensor> result{out.cpu().to(torch::kFloat64)};
    for (const auto& t : in) result.push_back(t.grad().cpu().to(torch::kFloat64));
    return result;
  };
  for (bool muon : {false, true}) {
    const auto gpu = run(torch::kCUDA, torch::kFloat32, muon), cpu = run(torch::kCPU, torch::kFloat64, muon);
    for (size_t i = 0; i < gpu.size(); ++i) {
      EXPECT_LT(test::relative_error(gpu[i], cpu[i]), muon ? 1e-3 : 1e-4) << "output/gradient " << i << (muon ? " with Muon" : "");
    }
  }
}

}  // namespace
}  // namespace loom
