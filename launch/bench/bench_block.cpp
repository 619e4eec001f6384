// loom bench block (and build/loom-block-bench): the attention block kernel alone on this machine's
// device, forward and forward + backward, causal (one document) and fully visible, MHA and GQA,
// next to the matmul ceiling of the same dtype measured in the same run. On a GPU it runs bf16
// through each fused kernel this LibTorch has (FlashAttention-2 and cuDNN, fused_block.h) and, up
// to 4K tokens, the tiled kernel in float32 for comparison, and for MHA ATen's SDPA alone with the
// same kernel (one call on the whole block: no masks to analyse, no LSE to convert; what the kernel
// gives without Loom's block wrapper); on the CPU, the tiled kernel in float32.
// FLOPs are model FLOPs: forward 4·d·Hq per visible (query, key) pair, backward 2.5× that.
#include "launch/bench/benchmarks.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/attention/aten_attention_kernels.h"
#include "kernels/attention/block_attention.h"
#include "kernels/attention/fused_block.h"
#include "launch/bench/machine_ceiling.h"

namespace loom {
namespace {

struct Row {
  int64_t tokens, hq, hkv;
  bool causal;
};

void print_row(const Row& r, const std::string& path, double t_fwd, double t_bwd, double fwd_flops, double ceiling) {
  const double fwd = fwd_flops / t_fwd, both = 3.5 * fwd_flops / (t_fwd + t_bwd);
  std::printf("%7ld %6s %7s %-10s %9.4f %9.4f %10.3g %7s %10.3g %7s\n", r.tokens,
              (std::to_string(r.hq) + "/" + std::to_string(r.hkv)).c_str(), r.causal ? "causal" : "full", path.c_str(),
              t_fwd, t_bwd, fwd / 1e12, percent_of(fwd, ceiling).c_str(), both / 1e12, percent_of(both, ceiling).c_str());
}

struct Block {
  torch::Tensor q, k, v, dout;
  AttentionMask mask;
  double scale, fwd_flops;
};

Block make_block(const Row& r, int64_t d, torch::TensorOptions opt) {
  torch::manual_seed(0);
  Block b{torch::randn({r.hq, r.tokens, d}, opt), torch::randn({r.hkv, r.tokens, d}, opt),
          torch::randn({r.hkv, r.tokens, d}, opt), torch::randn({r.hq, r.tokens, d}, opt),
          AttentionMask::self(torch::arange(r.tokens), torch::zeros({r.tokens}, torch::kInt64), r.causal),
          1.0 / std::sqrt(static_cast<double>(d)), 0};
  b.fwd_flops = 4.0 * d * r.hq * static_cast<double>(visible_pairs(b.mask));
  return b;
}

void run_row(const Row& r, int64_t d, torch::TensorOptions opt, const std::string& path, double ceiling, int reps) {
  const Block b = make_block(r, d, opt);
  BlockOutput out;
  const double t_fwd = median_seconds(reps, [&] {
    out = block_forward(b.q, b.k, b.v, b.mask, b.scale);
    out.lse[0][0].item<float>();
  });
  const double t_bwd = median_seconds(reps, [&] {
    const BlockGrads g = block_backward(b.dout, b.q, b.k, b.v, out.out, out.lse, b.mask, b.scale);
    g.dk[0][0][0].item<float>();
  });
  print_row(r, path, t_fwd, t_bwd, b.fwd_flops, ceiling);
}

#if LOOM_ATEN_CUDNN  // SDPA with a switch for cuDNN
// The backward's time is that of forward + backward less the forward's.
void run_sdpa_row(const Row& r, int64_t d, torch::TensorOptions opt, FusedKernel kernel, double ceiling, int reps) {
  auto& aten = at::globalContext();
  aten.setSDPUseFlash(kernel == FusedKernel::kFlash);
  aten.setSDPUseCuDNN(kernel == FusedKernel::kCudnn);
  aten.setSDPUseMemEfficient(false);
  aten.setSDPUseMath(false);
  const Block b = make_block(r, d, opt);
  const auto q = b.q.unsqueeze(0).requires_grad_(), k = b.k.unsqueeze(0).requires_grad_(),
             v = b.v.unsqueeze(0).requires_grad_();
  auto forward = [&] { return at::scaled_dot_product_attention(q, k, v, {}, 0.0, r.causal, b.scale); };
  const double t_fwd = median_seconds(reps, [&] { forward()[0][0][0][0].item<float>(); });
  const double t_both = median_seconds(reps, [&] {
    forward().backward(b.dout.unsqueeze(0));
    k.grad()[0][0][0][0].item<float>();
  });
  print_row(r, std::string("sdpa-") + fused_kernel_name(kernel), t_fwd, t_both - t_fwd, b.fwd_flops, ceiling);
}
#endif

}  // namespace

int run_bench_block(const BlockBenchArgs& args) {
  const bool gpu = torch::cuda::is_available();
  std::vector<int64_t> lengths = args.lengths;
  if (lengths.empty()) lengths = gpu ? std::vector<int64_t>{1024, 4096, 16384, 65536} : std::vector<int64_t>{1024, 4096};
  const int64_t d = gpu ? 128 : 64, heads = gpu ? 32 : 8;
  const auto f32 = torch::dtype(torch::kFloat32).device(gpu ? torch::kCUDA : torch::kCPU);
  const auto bf16 = f32.dtype(torch::kBFloat16);
  const MachineCeiling ceiling_f32 = measure_machine_ceiling(f32);
  std::printf("loom bench block on %s, head dim %ld\n%s\n", gpu ? "cuda" : "cpu", d, ceiling_f32.summary().c_str());
  double ceiling_bf16 = 0;
  if (gpu) {
    const MachineCeiling c = measure_machine_ceiling(bf16);
    ceiling_bf16 = c.matmul_flops;
    std::printf("%s\n", c.summary().c_str());
  }
  std::vector<FusedKernel> fused;
  for (FusedKernel k : {FusedKernel::kFlash, FusedKernel::kCudnn}) {
    std::printf("%s kernel in this LibTorch: %s\n", fused_kernel_name(k), fused_kernel_available(k) ? "yes" : "no");
    if (gpu && fused_kernel_available(k)) fused.push_back(k);
  }
  std::printf("%7s %6s %7s %-10s %9s %9s %10s %7s %10s %7s\n", "tokens", "H/G", "mask", "path", "fwd_s", "bwd_s",
              "fwd_TF/s", "of_ceil", "f+b_TF/s", "of_ceil");
  for (int64_t tokens : lengths)
    for (int64_t hkv : {heads, heads / 4})
      for (bool causal : {true, false}) {
        const Row row{tokens, heads, hkv, causal};
        for (FusedKernel k : fused) {
          set_fused_kernel(k);
          run_row(row, d, bf16, std::string(fused_kernel_name(k)) + "-bf16", ceiling_bf16, 5);
#if LOOM_ATEN_CUDNN
          if (hkv == heads) run_sdpa_row(row, d, bf16, k, ceiling_bf16, 5);
#endif
        }
        // The tiled kernel on the GPU is far behind the fused ones; a few rows keep it in view.
        if (!gpu || tokens <= 4096) run_row(row, d, f32, "tiled-f32", ceiling_f32.matmul_flops, 3);
      }
  return 0;
}

}  // namespace loom
