#include "launch/bench/machine_ceiling.h"

#include <array>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#if defined(LOOM_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#endif

namespace loom {
namespace {

std::string shape_text(int64_t m, int64_t n, int64_t k) {
  return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
}

// LibTorch's matmul: its BLAS on the CPU, cuBLAS on a GPU. Each timed call reads one value back, so
// GPU work has finished when its clock stops.
GemmRate libtorch_rate(const torch::TensorOptions& options, int64_t m, int64_t n, int64_t k) {
  const auto a = torch::randn({m, k}, options), b = torch::randn({k, n}, options);
  auto c = torch::empty({m, n}, options);
  const double s = median_seconds(7, [&] {
    torch::matmul_out(c, a, b);
    c[0][0].item<float>();
  });
  return {options.device().is_cuda() ? "cublas" : "libtorch-blas", shape_text(m, n, k), 2.0 * m * n * k / s};
}

#if defined(LOOM_HAVE_DNNL)
GemmRate onednn_rate(int64_t m, int64_t n, int64_t k) {
  const auto a = torch::randn({m, k}), b = torch::randn({k, n});
  auto c = torch::empty({m, n});
  const double s = median_seconds(7, [&] {
    dnnl_sgemm('N', 'N', m, n, k, 1.0f, a.data_ptr<float>(), k, b.data_ptr<float>(), n, 0.0f, c.data_ptr<float>(), n);
  });
  return {"onednn-sgemm", shape_text(m, n, k), 2.0 * m * n * k / s};
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
  char basis[160];
  std::snprintf(basis, sizeof basis, "%d cores x %.2f GHz (cpuinfo; turbo may be higher) x %d (%s, %d-bit units, 2 FMA units assumed)",
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
  c.dtype = c10::toString(options.dtype().toScalarType());
  c.cores = static_cast<int>(std::thread::hardware_concurrency());
  // Square products (where BLAS libraries peak) and a product of depth 64 (the block kernel's
  // head dimension: its tiles have K or N this small).
  const std::vector<std::array<int64_t, 3>> shapes =
      gpu ? std::vector<std::array<int64_t, 3>>{{4096, 4096, 4096}, {8192, 8192, 8192}}
          : std::vector<std::array<int64_t, 3>>{{1024, 1024, 1024}, {2048, 2048, 2048}, {2048, 2048, 64}};
  for (const auto& [m, n, k] : shapes) {
    c.gemms.push_back(libtorch_rate(options, m, n, k));
#if defined(LOOM_HAVE_DNNL)
    if (!gpu && options.dtype() == torch::kFloat32) c.gemms.push_back(onednn_rate(m, n, k));
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
  const GemmRate* best = &gemms.front();
  for (const auto& g : gemms)
    if (g.flops > best->flops) best = &g;
  std::string text = dtype + " matmul ceiling " + human(matmul_flops) + "FLOP/s (" + best->library + " " + best->shape + "; ";
  for (const auto& g : gemms)
    if (&g != best) text += g.library + " " + g.shape + " " + human(g.flops) + ", ";
  text.resize(text.size() - 2);
  text += ")";
  if (nominal_flops > 0) text += " | nominal peak " + human(nominal_flops) + "FLOP/s = " + nominal_basis;
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
