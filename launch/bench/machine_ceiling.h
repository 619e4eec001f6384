// The machine's own ceilings, measured in the same run as a benchmark so that its figures read as
// fractions of what this machine, at this moment, can do.
//
// The matmul ceiling is the fastest rate any GEMM library the build uses reaches: on the CPU
// LibTorch's matmul (its BLAS: OpenBLAS on Debian) and oneDNN's sgemm (which the block kernel's
// tiles call), at square and tile shapes, as one call on every thread and as every thread calling
// on its own matrices (the block kernel's way); on a GPU cuBLAS through LibTorch in the dtype asked
// for. A kernel that beats the ceiling took a path the ceiling did not measure, or the machine sped
// up between the two: percent_of flags it. Next to it,
// the processor's nominal peak where it can be derived from /proc/cpuinfo (cores x clock x FLOPs
// per cycle of its vector ISA): at cpuinfo's clock, usually the base one, so a boost clock lifts
// measurements above it, and the summary then says which clock the ceiling implies.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace loom {

// One library's rate at one shape (m x n x k), FLOP/s of the median of several calls.
struct GemmRate {
  std::string library, shape;
  double flops = 0;
};

struct MachineCeiling {
  std::string device;            // "cpu", "cuda"
  std::string dtype;             // of the products
  std::vector<GemmRate> gemms;   // every library and shape measured
  double matmul_flops = 0;       // the highest of them: what fractions are read against
  double nominal_flops = 0;      // 0 where it cannot be derived
  double nominal_ghz = 0;        // the clock it assumes (cpuinfo's, usually the base clock)
  std::string nominal_basis;     // how it was derived, e.g. "2 cores x 2.60 GHz x 32 (AVX2 FMA, 2 units)"
  double memory_bytes_s = 0;     // large tensor copy, bytes read + written per second (CPU only)
  int cores = 0;

  // The ceiling with each library's best shape, then the nominal peak and the bandwidth: two lines.
  std::string summary() const;
};

// The ceiling for the device and dtype of `options` (float32 on the CPU by default).
MachineCeiling measure_machine_ceiling(const torch::TensorOptions& options = torch::dtype(torch::kFloat32));

// The higher of two readings (noise only ever lowers a measurement).
const MachineCeiling& higher(const MachineCeiling& a, const MachineCeiling& b);

// flops / ceiling as "61.2%", or "104.3%!" when above 1: the benchmark missed a faster path.
std::string percent_of(double flops, double ceiling);

// Median wall time of `reps` calls of fn after `warmups` (one) untimed calls: the machine is shared and noisy.
template <class Fn>
double median_seconds(int reps, Fn&& fn, int warmups = 1) {
  for (int i = 0; i < warmups; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace loom
