// build/loom-lact-bench: `loom bench lact` with its defaults, for machines that build the kernels
// only; on a GPU the model table runs 4K-64K tokens.
#include <torch/cuda.h>

#include "runtime/core/host_allocator.h"
#include "launch/bench/benchmarks.h"

int main() {
  loom::keep_large_host_blocks();  // as `loom` does, so both measure the same host allocator
  loom::LactBenchArgs args;
  if (torch::cuda::is_available()) args.lengths = {4096, 8192, 16384, 32768, 65536};
  return loom::run_bench_lact(args);
}
