// The CUDA RMSNorm against the CPU reference. Skips where no GPU exists.
#include <cuda_runtime.h>

#include "kernels/cuda/rms_norm_cuda.h"
#include "kernels/rms_norm.h"
#include "tests/relative_error.h"
#include <gtest/gtest.h>

namespace loom {
namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

TEST(RmsNormCuda, MatchesCpuReference) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(0);
  for (int64_t cols : {1, 31, 256, 1000, 4096}) {
    const auto x = torch::randn({7, cols}), w = torch::randn({cols});
    const auto want = rms_norm(x, w, 1e-5);
    float *dx = nullptr, *dw = nullptr, *dy = nullptr;
    ASSERT_EQ(cudaMalloc(&dx, x.nbytes()), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dw, w.nbytes()), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dy, x.nbytes()), cudaSuccess);
    cudaMemcpy(dx, x.data_ptr<float>(), x.nbytes(), cudaMemcpyHostToDevice);
    cudaMemcpy(dw, w.data_ptr<float>(), w.nbytes(), cudaMemcpyHostToDevice);
    ASSERT_EQ(cuda::rms_norm(dx, dw, dy, 7, cols, 1e-5f), cudaSuccess);
    auto got = torch::empty_like(x);
    cudaMemcpy(got.data_ptr<float>(), dy, x.nbytes(), cudaMemcpyDeviceToHost);
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(dy);
    EXPECT_LT(test::relative_error(got, want), 1e-5) << "cols " << cols;
  }
}

}  // namespace
}  // namespace loom
