// `loom bench lact` (and build/loom-lact-bench, its kernels-only twin for GPU machines):
//  1. utilisation: LaCT's fast-weight chunk loop (apply, update with momentum and weight norm)
//     forward + backward as a fraction of the matmul ceiling measured in the same run, per chunk size;
//     from chunk 2048 also with the SwiGLU's element-wise passes as LibTorch ops, and the loop's
//     matrix products alone (what its shapes allow);
//  2. time per token of a LaCT model against a full-attention Llama of the same size, per length
//     (float32 on the CPU; on a GPU a larger model in bf16).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom {

struct LactBenchArgs {
  std::vector<int64_t> chunks = {16, 64, 256, 2048, 8192};
  int64_t tokens = 0;  // of the utilisation table (at most 256 chunks); 0: 16384 on a CPU, 65536 on a GPU
  int64_t heads = 0, head_dim = 0;  // fast-weight heads of the utilisation table; 0: 2 x 384 on a CPU, 4 x 512 on a GPU
  std::vector<int64_t> lengths = {2048, 4096, 8192, 16384};  // of the model table; empty: skip it
  int64_t reps = 3;
  std::string json_out;
};

int run_lact_bench(const LactBenchArgs& args);

}  // namespace loom
