#include "launch/bench/benchmarks.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "runtime/core/text_file.h"
#include "runtime/model/fast_weight_scan.h"
#include "runtime/model/llama.h"
#include "runtime/model/swiglu_gate.h"
#include "launch/bench/machine_ceiling.h"

namespace loom {
namespace {

// One chunk size: forward + backward of the chunk loop over `tokens` tokens of one document, B heads
// of dimension d (hidden d). Model FLOPs per token and head (docs/lact.md, counted from the update's
// formulas): applying to the query 6·d·dh, and for every token whose chunk updates (all but the
// last chunk) 12·d·dh more; the backward counted as twice the forward.
// `fused`: the SwiGLU's element-wise passes as Loom's fused nodes (else as LibTorch ops).
nlohmann::json scan_row(int64_t chunk, int64_t tokens, int64_t heads, int64_t d, const torch::TensorOptions& opt,
                        double ceiling, int64_t reps, bool fused) {
  set_swiglu_fusion(fused);
  torch::manual_seed(0);
  const auto leaf = [&](std::vector<int64_t> shape, double scale) {
    return (torch::randn(shape, opt) * scale).requires_grad_();
  };
  const auto q = leaf({heads, tokens, d}, 1 / std::sqrt(d)), k = leaf({heads, tokens, d}, 1 / std::sqrt(d)),
             v = leaf({heads, tokens, d}, 1.0);
  const auto lr = (torch::rand({3, heads, tokens}, opt) * 2e-3).requires_grad_(), beta = torch::rand({heads, tokens}, opt);
  const FastWeights w{leaf({heads, d, d}, 1 / std::sqrt(d)), leaf({heads, d, d}, 1 / std::sqrt(d)),
                      leaf({heads, d, d}, 1 / std::sqrt(d))};
  const auto doc = torch::zeros({tokens}, torch::kInt64);  // on the CPU, where the loop reads it
  const double seconds = median_seconds(reps, [&] {
    const auto out = fast_weight_scan(w, q, k, v, lr[0], lr[1], lr[2], beta, doc, {chunk, false, true, false});
    out.sum().backward();
    q.grad()[0][0][0].item<float>();
  });
  const int64_t last = tokens % chunk == 0 ? chunk : tokens % chunk;
  const double fwd = static_cast<double>(heads) * d * d * (6.0 * tokens + 12.0 * (tokens - last));
  const double flops = 3 * fwd / seconds;
  set_swiglu_fusion(true);
  std::printf("%7ld %8ld %-6s %10.4f %10.3g %8s\n", chunk, tokens, fused ? "fused" : "ops", seconds, flops / 1e12,
              percent_of(flops, ceiling).c_str());
  return {{"chunk", chunk},     {"tokens", tokens},           {"fused", fused},
          {"seconds", seconds}, {"flops", flops}, {"fraction_of_ceiling", flops / ceiling}};
}

// The chunk loop's matrix products alone, at its shapes: per chunk of C tokens the forward's six
// token-sized products ([B, C, d] x [B, d, d]) and three weight-sized ones ([B, d, C] x [B, C, d]),
// and the backward's nine and nine, the same FLOPs the loop is credited with. What these shapes
// allow on this machine, next to the loop that also does everything else.
nlohmann::json products_row(int64_t chunk, int64_t tokens, int64_t heads, int64_t d, const torch::TensorOptions& opt,
                            double ceiling, int64_t reps) {
  torch::manual_seed(0);
  const auto x = torch::randn({heads, chunk, d}, opt), w = torch::randn({heads, d, d}, opt) / std::sqrt(d);
  auto token_out = torch::empty({heads, chunk, d}, opt), weight_out = torch::empty({heads, d, d}, opt);
  const int64_t chunks = tokens / chunk;
  const double seconds = median_seconds(reps, [&] {
    for (int64_t c = 0; c < chunks; ++c) {
      for (int i = 0; i < 15; ++i) torch::bmm_out(token_out, x, w);
      for (int i = 0; i < 12; ++i) torch::bmm_out(weight_out, x.transpose(1, 2), x);
    }
    weight_out[0][0][0].item<float>();
  });
  const double flops = 27.0 * 2 * chunk * d * d * heads * chunks / seconds;
  std::printf("%7ld %8ld %-6s %10.4f %10.3g %8s\n", chunk, chunks * chunk, "bmm", seconds, flops / 1e12,
              percent_of(flops, ceiling).c_str());
  return {{"chunk", chunk}, {"tokens", chunks * chunk}, {"products_only", true}, {"seconds", seconds}, {"flops", flops},
          {"fraction_of_ceiling", flops / ceiling}};
}

// The model table's two models: on the CPU d_model 128, 2 layers, 2 heads; on a GPU d_model 1024,
// 4 layers, 8 heads of 128 (bf16). LaCT in every layer: chunk 2048, window 2048, 2 fast heads on the
// CPU, 4 on a GPU.
ModelConfig bench_model(int64_t length, bool lact, bool gpu) {
  ModelConfig c;
  c.d_model = gpu ? 1024 : 128;
  c.n_layers = gpu ? 4 : 2;
  c.n_heads = c.n_kv_heads = gpu ? 8 : 2;
  c.max_seq_len = length;
  if (lact) c.lact = {1, 2048, 2048, gpu ? 4 : 2, 1, false, true, 1e-3, 32};
  return c;
}

// Forward + backward of one training step on one document of `length` tokens, seconds (median).
// Positions and document ids stay on the host, where the attention kernels plan their blocks.
double model_step_seconds(const ModelConfig& c, int64_t length, int64_t reps, const torch::TensorOptions& opt) {
  torch::manual_seed(0);
  Llama model(c);
  model->to(opt.device(), opt.dtype().toScalarType());
  const auto tokens = torch::randint(0, c.vocab_size, {length}).to(opt.device()), pos = torch::arange(length);
  const auto doc = torch::zeros({length}, torch::kInt64);
  return median_seconds(reps, [&] {
    model->zero_grad();
    const auto logits = model->forward(tokens.narrow(0, 0, length - 1), pos.narrow(0, 0, length - 1), doc.narrow(0, 0, length - 1));
    torch::nn::functional::cross_entropy(logits, tokens.narrow(0, 1, length - 1)).backward();
    logits[0][0].item<float>();  // the GPU has finished when the clock stops
  });
}

}  // namespace

int run_bench_lact(const LactBenchArgs& args) {
  const bool gpu = torch::cuda::is_available();
  const auto opt = torch::dtype(torch::kFloat32).device(gpu ? torch::kCUDA : torch::kCPU);
  const MachineCeiling before = measure_machine_ceiling(opt);
  const double ceiling = before.matmul_flops;
  const int64_t tokens = args.tokens > 0 ? args.tokens : gpu ? 65536 : 16384;
  // The LaCT paper's 760M language model has 4 fast heads of 384; the CPU takes 2 of them.
  const int64_t heads = args.heads > 0 ? args.heads : gpu ? 4 : 2, d = args.head_dim > 0 ? args.head_dim : gpu ? 512 : 384;
  std::printf("loom bench lact on %s, float32\n%s\n", gpu ? "cuda" : "cpu", before.summary().c_str());
  std::printf("fast-weight chunk loop, fwd+bwd: %ld heads of %ldx%ld, momentum and weight norm on, Muon off\n", heads, d, d);
  std::printf("path: fused = the SwiGLU's element-wise passes fused (the default), ops = as LibTorch ops, bmm = the "
              "loop's matrix products alone\n");
  std::printf("%7s %8s %-6s %10s %10s %8s\n", "chunk", "tokens", "path", "seconds", "TFLOP/s", "of_ceil");
  nlohmann::json scan = nlohmann::json::array();
  for (int64_t chunk : args.chunks) {
    // Every chunk leaves its weights for the backward: at most 256 chunks per row bounds the memory.
    const int64_t n = std::min(tokens, 256 * chunk);
    scan.push_back(scan_row(chunk, n, heads, d, opt, ceiling, args.reps, true));
    // What the fused element-wise passes buy, on the rows the utilisation goal is about.
    if (chunk >= 2048) {
      scan.push_back(scan_row(chunk, n, heads, d, opt, ceiling, args.reps, false));
      scan.push_back(products_row(chunk, n, heads, d, opt, ceiling, args.reps));
    }
  }
  // A shared machine's ceiling moves during a run; a second reading shows by how much.
  const double ceiling_after = measure_machine_ceiling(opt).matmul_flops;
  std::printf("matmul ceiling after the table: %.3g TFLOP/s\n", ceiling_after / 1e12);

  nlohmann::json model = nlohmann::json::array();
  if (!args.lengths.empty()) {
    const auto model_opt = gpu ? opt.dtype(torch::kBFloat16) : opt;
    const ModelConfig shape = bench_model(0, true, gpu);
    std::printf("\nmodel step (fwd+bwd, one document, %s), d_model %ld, %ld layers, %ld heads: full attention vs LaCT "
                "(every layer; chunk 2048, window 2048, %ld fast heads)\n",
                gpu ? "bf16" : "float32", shape.d_model, shape.n_layers, shape.n_heads, shape.lact.heads);
    std::printf("%8s %14s %14s %10s\n", "tokens", "full_us/token", "lact_us/token", "lact/full");
    for (int64_t length : args.lengths) {
      const double full = model_step_seconds(bench_model(length, false, gpu), length, args.reps, model_opt) / length;
      const double lact = model_step_seconds(bench_model(length, true, gpu), length, args.reps, model_opt) / length;
      std::printf("%8ld %14.2f %14.2f %10.2f\n", length, 1e6 * full, 1e6 * lact, lact / full);
      model.push_back({{"tokens", length}, {"full_s_per_token", full}, {"lact_s_per_token", lact}});
    }
  }
  if (!args.json_out.empty()) {
    const nlohmann::json out{{"device", gpu ? "cuda" : "cpu"}, {"matmul_ceiling_flops", ceiling},
                             {"matmul_ceiling_after_flops", ceiling_after}, {"scan", scan}, {"model", model}};
    write_text_file(args.json_out, out.dump(2) + "\n");
  }
  return 0;
}

}  // namespace loom
