// build/loom-block-bench [tokens ...]: `loom bench block`, for machines that build the kernels only.
#include <string>

#include "launch/bench/benchmarks.h"

int main(int argc, char** argv) {
  loom::BlockBenchArgs args;
  for (int i = 1; i < argc; ++i) args.lengths.push_back(std::stoll(argv[i]));
  return loom::run_bench_block(args);
}
