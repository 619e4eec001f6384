// build/loom-lact-bench: `loom bench lact` with its defaults, for machines that build the kernels only.
#include "scripts/bench/lact_bench.h"

int main() { return loom::run_lact_bench({}); }
