#include "scripts/bench/lact_bench.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "runtime/core/text_file.h"
#include "runtime/model/fast_weight_scan.h"
#include "runtime/model/llama.h"
#include "launch/machine_ceiling.h"

namespace loom {
namespace {

// One chunk size: forward + backward of the chunk loop over `tokens` tokens of one document, B heads
// of dimension d (hidden d). Model FLOPs per token and head (seco-lact.md B.3): applying to the
// query 6·d·dh, and for every token whose chunk updates (all but the last chunk) 12·d·dh more;
// the backward counted as twice the forward.
nlohmann::json scan_row(int64_t chunk, int64_t tokens, int64_t heads, int64_t d, const torch::TensorOptions& opt,
                        double ceiling, int64_t reps) {
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
  std::printf("%7ld %8ld %10.4f %10.3g %7.1f%%\n", chunk, tokens, seconds, flops / 1e12, 100 * flops / ceiling);
  return {{"chunk", chunk}, {"tokens", tokens}, {"seconds", seconds}, {"flops", flops}, {"fraction_of_ceiling", flops / ceiling}};
}

ModelConfig bench_model(int64_t length, bool lact) {
  ModelConfig c;
  c.d_model = 128;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  c.max_seq_len = length;
  if (lact) c.lact = {1, 2048, 2048, 2, 1, false, true, 1e-3, 32};
  return c;
}

// Forward + backward of one training step on one document of `length` tokens, seconds (median).
double model_step_seconds(const ModelConfig& c, int64_t length, int64_t reps) {
  torch::manual_seed(0);
  Llama model(c);
  const auto tokens = torch::randint(0, c.vocab_size, {length}), pos = torch::arange(length);
  const auto doc = torch::zeros({length}, torch::kInt64);
  return median_seconds(reps, [&] {
    model->zero_grad();
    const auto logits = model(tokens.narrow(0, 0, length - 1), pos.narrow(0, 0, length - 1), doc.narrow(0, 0, length - 1));
    torch::nn::functional::cross_entropy(logits, tokens.narrow(0, 1, length - 1)).backward();
  });
}

}  // namespace

int run_lact_bench(const LactBenchArgs& args) {
  const bool gpu = torch::cuda::is_available();
  const auto opt = torch::dtype(torch::kFloat32).device(gpu ? torch::kCUDA : torch::kCPU);
  const auto ceiling_now = [&] { return matmul_ceiling(opt, gpu ? 8192 : 2048); };
  const double ceiling = ceiling_now();
  const int64_t tokens = args.tokens > 0 ? args.tokens : gpu ? 65536 : 16384;
  // The paper's 760M model has 4 fast heads of 384 (seco-lact.md B.5); the CPU takes 2 of them.
  const int64_t heads = args.heads > 0 ? args.heads : gpu ? 4 : 2, d = args.head_dim > 0 ? args.head_dim : gpu ? 512 : 384;
  std::printf("loom bench lact on %s, float32; matmul ceiling %.3g TFLOP/s\n", gpu ? "cuda" : "cpu", ceiling / 1e12);
  std::printf("fast-weight chunk loop, fwd+bwd: %ld heads of %ldx%ld, momentum and weight norm on, Muon off\n", heads, d, d);
  std::printf("%7s %8s %10s %10s %8s\n", "chunk", "tokens", "seconds", "TFLOP/s", "of_ceil");
  nlohmann::json scan = nlohmann::json::array();
  for (int64_t chunk : args.chunks) {
    // Every chunk leaves its weights for the backward: at most 256 chunks per row bounds the memory.
    scan.push_back(scan_row(chunk, std::min(tokens, 256 * chunk), heads, d, opt, ceiling, args.reps));
  }
  // A shared machine's ceiling moves during a run; a second reading shows by how much.
  const double ceiling_after = ceiling_now();
  std::printf("matmul ceiling after the table: %.3g TFLOP/s\n", ceiling_after / 1e12);

  nlohmann::json model = nlohmann::json::array();
  if (!gpu && !args.lengths.empty()) {
    std::printf("\nmodel step (fwd+bwd, one document), d_model 128, 2 layers, 2 heads: full attention vs LaCT "
                "(every layer; chunk 2048, window 2048, 2 fast heads)\n");
    std::printf("%8s %14s %14s %10s\n", "tokens", "full_us/token", "lact_us/token", "lact/full");
    for (int64_t length : args.lengths) {
      const double full = model_step_seconds(bench_model(length, false), length, args.reps) / length;
      const double lact = model_step_seconds(bench_model(length, true), length, args.reps) / length;
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
