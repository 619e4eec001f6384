// The CUDA residual add + RMSNorm and its backward against kernels/add_rms_norm.h on the CPU, both in
// bfloat16 with float32 statistics. They round to bfloat16 at the same places and differ only in
// the order of float32 sums, so the sums agree bit for bit and the rest to within two bfloat16 steps
// of the largest element, whatever the block count (fewer blocks than rows, more, one). Skips where
// no GPU exists.
#include <cuda_runtime.h>

#include "kernels/add_rms_norm.h"
#include "kernels/cuda/add_rms_norm_cuda.h"
#include "tests/relative_error.h"
#include <gtest/gtest.h>

namespace loom {
namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Device memory holding a copy of a host tensor (or `bytes` uninitialised bytes), freed on scope exit.
class DeviceCopy {
 public:
  explicit DeviceCopy(size_t bytes) { EXPECT_EQ(cudaMalloc(&data_, bytes > 0 ? bytes : 1), cudaSuccess); }
  explicit DeviceCopy(const torch::Tensor& host) : DeviceCopy(host.nbytes()) {
    EXPECT_EQ(cudaMemcpy(data_, host.contiguous().data_ptr(), host.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceCopy() { cudaFree(data_); }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;

  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  torch::Tensor to_host(c10::IntArrayRef shape, torch::ScalarType dtype) const {
    auto out = torch::empty(shape, dtype);
    EXPECT_EQ(cudaMemcpy(out.data_ptr(), data_, out.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  void* data_ = nullptr;
};

using bf16 = __nv_bfloat16;
constexpr double kTwoSteps = 1.0 / 128;  // bfloat16 keeps 8 significant bits

TEST(AddRmsNormCuda, ForwardAndBackwardMatchTheCpuReference) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(0);
  const auto o = torch::dtype(torch::kBFloat16);
  for (const int64_t rows : {1, 5, 37})
    for (const int64_t cols : {1, 31, 256, 1000, 4096})
      for (const int blocks : {1, 3, 8})
        for (const bool with_h : {true, false}) {
          const std::string where = "rows " + std::to_string(rows) + ", cols " + std::to_string(cols) + ", blocks " +
                                    std::to_string(blocks) + (with_h ? "" : ", no h");
          const auto h = with_h ? torch::randn({rows, cols}, o) : torch::Tensor();
          const auto s = torch::randn({rows, cols}, o), w = torch::randn({cols}, o);
          const auto dnormed = torch::randn({rows, cols}, o), dafter = torch::randn({rows, cols}, o);
          const AddNorm want = add_rms_norm(h, s, w, 1e-5);
          const AddNormGrads want_grads = add_rms_norm_backward(want, w, dnormed, with_h ? dafter : torch::Tensor());

          const DeviceCopy dh(with_h ? h : torch::zeros({1}, o)), ds(s), dw(w), ddn(dnormed), dda(dafter);
          const size_t elements = static_cast<size_t>(rows * cols) * sizeof(bf16);
          const DeviceCopy sum(elements), normed(elements), rstd(rows * sizeof(float)), dsum(elements),
              dweight(cols * sizeof(bf16)), work(cuda::add_rms_norm_backward_workspace(cols, blocks));
          ASSERT_EQ(cuda::add_rms_norm(with_h ? dh.as<bf16>() : nullptr, ds.as<bf16>(), dw.as<bf16>(), sum.as<bf16>(),
                                       normed.as<bf16>(), rstd.as<float>(), rows, cols, 1e-5f, blocks),
                    cudaSuccess) << where;
          ASSERT_EQ(cuda::add_rms_norm_backward(sum.as<bf16>(), rstd.as<float>(), dw.as<bf16>(), ddn.as<bf16>(),
                                                with_h ? dda.as<bf16>() : nullptr, dsum.as<bf16>(), dweight.as<bf16>(),
                                                work.as<void>(), rows, cols, blocks),
                    cudaSuccess) << where;
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << where;

          EXPECT_TRUE(torch::equal(sum.to_host({rows, cols}, torch::kBFloat16), want.sum)) << where;
          EXPECT_LT(test::relative_error(rstd.to_host({rows, 1}, torch::kFloat32), want.rstd), 1e-5) << where;
          EXPECT_LT(test::relative_error(normed.to_host({rows, cols}, torch::kBFloat16), want.normed), kTwoSteps) << where;
          EXPECT_LT(test::relative_error(dsum.to_host({rows, cols}, torch::kBFloat16), want_grads.dsum), kTwoSteps) << where;
          EXPECT_LT(test::relative_error(dweight.to_host({cols}, torch::kBFloat16), want_grads.dweight), kTwoSteps) << where;
        }
}

TEST(AddRmsNormCuda, RefusesNoBlocks) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  EXPECT_EQ(cuda::add_rms_norm(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1, 1e-5f, 0), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace loom
