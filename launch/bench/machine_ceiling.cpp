#include "launch/bench/machine_ceiling.h"

#include <ATen/Parallel.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#if defined(LOOM_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#endif

#include "runtime/core/precision.h"

namespace loom {
namespace {

std::string shape_text(int64_t m, int64_t n, int64_t k) {
  return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
}

// How the products of one measurement run: one call using every thread, or every thread calling on
// its own matrices (as the block kernel does: its query tiles are spread over the intra-op threads,
// each tile's products single-threaded). The second often beats the first on small shapes, where
// one call's threads spend their time synchronising.
enum class Spread { kOneCall, kPerThread };

using Gemm = std::function<void(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c)>;

// FLOP/s of `gemm` at m x n x k, the median of several timed rounds. Each timed round reads one
// value back, so GPU work has finished when its clock stops.
double gemm_flops(const Gemm& gemm, const torch::TensorOptions& options, int64_t m, int64_t n, int64_t k, Spread spread) {
  const int64_t copies = spread == Spread::kPerThread ? at::get_num_threads() : 1;
  const int64_t calls = spread == Spread::kPerThread ? 4 : 1;  // per copy and round: enough work per thread
  std::vector<torch::Tensor> a, b, c;
  for (int64_t i = 0; i < copies; ++i) {
    a.push_back(torch::randn({m, k}, options));
    b.push_back(torch::randn({k, n}, options));
    c.push_back(torch::empty({m, n}, options));
  }
  const auto round = [&] {
    if (spread == Spread::kOneCall) {
      gemm(a[0], b[0], c[0]);
    } else {
      at::parallel_for(0, copies, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
          for (int64_t r = 0; r < calls; ++r) gemm(a[i], b[i], c[i]);
      });
    }
    c[0][0][0].item<float>();
  };
  return 2.0 * m * n * k * copies * calls / median_seconds(7, round);
}

void measure_library(MachineCeiling& c, const std::string& library, const Gemm& gemm, const torch::TensorOptions& options,
                     const std::vector<std::array<int64_t, 3>>& shapes, Spread spread) {
  for (const auto& [m, n, k] : shapes)
    c.gemms.push_back({library + (spread == Spread::kPerThread ? " per thread" : ""), shape_text(m, n, k),
                       gemm_flops(gemm, options, m, n, k, spread)});
}

// LibTorch's matmul: its BLAS on the CPU (single-threaded inside a parallel region), cuBLAS on a GPU.
void libtorch_gemm(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c) { torch::matmul_out(c, a, b); }

#if defined(LOOM_HAVE_DNNL)
void onednn_gemm(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  dnnl_sgemm('N', 'N', m, n, k, 1.0f, a.data_ptr<float>(), k, b.data_ptr<float>(), n, 0.0f, c.data_ptr<float>(), n);
}
#endif

// The fields of /proc/cpuinfo's first processor.
std::string cpuinfo_field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon != std::string::npos) return line.substr(colon + 1 + (colon + 1 < line.size() && line[colon + 1] == ' '));
  }
  return "";
}

// cores x clock x fp32 FLOPs per cycle and core: vector lanes x 2 (an FMA is two FLOPs) x 2 FMA
// units. AMD's cores before family 26 (Zen 5) run AVX-512 on 256-bit units.
void derive_nominal_peak(MachineCeiling& c, bool float64) {
  std::ifstream file("/proc/cpuinfo");
  std::stringstream buffer;
  buffer << file.rdbuf();
  const std::string info = buffer.str();
  std::set<std::string> flags;
  std::istringstream words(cpuinfo_field(info, "flags"));
  for (std::string f; words >> f;) flags.insert(f);
  const std::string mhz = cpuinfo_field(info, "cpu MHz");
  if (mhz.empty() || !flags.count("fma")) return;
  const bool amd = cpuinfo_field(info, "vendor_id") == "AuthenticAMD";
  const int family = std::atoi(cpuinfo_field(info, "cpu family").c_str());
  int bits = flags.count("avx2") ? 256 : 128;
  std::string isa = flags.count("avx2") ? "AVX2 FMA" : "FMA";
  if (flags.count("avx512f")) {
    isa = "AVX-512";
    bits = amd && family < 26 ? 256 : 512;
  }
  const int lanes = bits / (float64 ? 64 : 32);
  const int per_cycle = lanes * 2 * 2;
  const double ghz = std::atof(mhz.c_str()) / 1000;
  c.nominal_flops = c.cores * ghz * 1e9 * per_cycle;
  c.nominal_ghz = ghz;
  char basis[160];
  std::snprintf(basis, sizeof basis, "%d cores x %.2f GHz (cpuinfo) x %d (%s, %d-bit units, 2 FMA units assumed)",
                c.cores, ghz, per_cycle, isa.c_str(), bits);
  c.nominal_basis = basis;
}

std::string human(double v) {
  char text[32];
  if (v >= 1e12) std::snprintf(text, sizeof text, "%.3g T", v / 1e12);
  else std::snprintf(text, sizeof text, "%.3g G", v / 1e9);
  return text;
}

}  // namespace

MachineCeiling measure_machine_ceiling(const torch::TensorOptions& options) {
  MachineCeiling c;
  const bool gpu = options.device().is_cuda();
  c.device = gpu ? "cuda" : "cpu";
  c.dtype = dtype_name(options.dtype().toScalarType());
  c.cores = static_cast<int>(std::thread::hardware_concurrency());
  if (gpu) {
    measure_library(c, "cublas", libtorch_gemm, options, {{4096, 4096, 4096}, {8192, 8192, 8192}}, Spread::kOneCall);
  } else {
    // Square products, where BLAS libraries peak, and the block kernel's tile shapes (depth 64, the
    // head dimension; 1024 rows, a tile of 256 queries times a GQA group of 4), both ways of
    // spreading them over the cores.
    const std::vector<std::array<int64_t, 3>> one_call = {{1024, 1024, 1024}, {2048, 2048, 2048}, {2048, 2048, 64}};
    const std::vector<std::array<int64_t, 3>> per_thread = {{512, 512, 512}, {1024, 256, 64}, {1024, 64, 256}};
    measure_library(c, "libtorch-blas", libtorch_gemm, options, one_call, Spread::kOneCall);
    measure_library(c, "libtorch-blas", libtorch_gemm, options, per_thread, Spread::kPerThread);
#if defined(LOOM_HAVE_DNNL)
    if (options.dtype() == torch::kFloat32) {
      measure_library(c, "onednn-sgemm", onednn_gemm, options, one_call, Spread::kOneCall);
      measure_library(c, "onednn-sgemm", onednn_gemm, options, per_thread, Spread::kPerThread);
    }
#endif
  }
  for (const auto& g : c.gemms) c.matmul_flops = std::max(c.matmul_flops, g.flops);
  if (!gpu) {
    derive_nominal_peak(c, options.dtype() == torch::kFloat64);
    const auto src = torch::randn({64 << 20});  // 256 MiB of float32
    auto dst = torch::empty_like(src);
    c.memory_bytes_s = 2.0 * static_cast<double>(src.nbytes()) / median_seconds(5, [&] { dst.copy_(src); });
  }
  return c;
}

std::string MachineCeiling::summary() const {
  // Each library's (and way of spreading's) best shape, the highest first.
  std::map<std::string, GemmRate> best;
  for (const auto& g : gemms)
    if (g.flops > best[g.library].flops) best[g.library] = g;
  std::vector<GemmRate> order;
  for (const auto& [library, g] : best) order.push_back(g);
  std::sort(order.begin(), order.end(), [](const GemmRate& a, const GemmRate& b) { return a.flops > b.flops; });
  std::string text = dtype + " matmul ceiling " + human(matmul_flops) + "FLOP/s, the best of:";
  for (const auto& g : order) text += " " + g.library + " " + g.shape + " " + human(g.flops) + ";";
  text.pop_back();
  if (nominal_flops > 0) {
    text += "\nnominal peak " + human(nominal_flops) + "FLOP/s = " + nominal_basis;
    // cpuinfo usually gives the base clock; a ceiling above the nominal peak says how fast the
    // cores at least ran (a boost clock), rather than that the count is wrong.
    if (matmul_flops > nominal_flops) {
      char clock[96];
      std::snprintf(clock, sizeof clock, " (the ceiling implies at least %.2f GHz)", nominal_ghz * matmul_flops / nominal_flops);
      text += clock;
    }
  }
  if (memory_bytes_s > 0) text += " | copy bandwidth " + human(memory_bytes_s) + "B/s";
  return text;
}

const MachineCeiling& higher(const MachineCeiling& a, const MachineCeiling& b) { return a.matmul_flops >= b.matmul_flops ? a : b; }

std::string percent_of(double flops, double ceiling) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f%%%s", 100 * flops / ceiling, flops > ceiling ? "!" : "");
  return text;
}

}  // namespace loom
