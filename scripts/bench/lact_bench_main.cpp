// build/loom-lact-bench: `loom bench lact` with its defaults, for machines that build the kernels only.
#include "runtime/core/host_allocator.h"
#include "scripts/bench/lact_bench.h"

int main() {
  loom::keep_large_host_blocks();  // as `loom` does, so both measure the same host allocator
  return loom::run_lact_bench({});
}
