// Loom's benchmarks, one function per `loom bench` subcommand. Each prints a table of ratios
// measured side by side in one run next to the machine's own ceilings (machine_ceiling.h), and
// writes JSON where asked. Docs: docs/benchmarks/.
//   train      training FLOP/s of a few model widths (bench_train.cpp)
//   comm       the communicator's collectives next to raw MPI, and overlap (bench_comm.cpp)
//   attention  local, ring and token_ring attention with compute, communication and waits apart (bench_attention.cpp)
//   tensor     a tensor-parallel layer stack with and without token splitting, compute and communication apart (bench_tensor.cpp)
//   chunkwise  memory and time of full backprop (with and without activation checkpointing), SeCO
//              and SpaCO (bench_chunkwise.cpp)
//   block      the block kernel alone, every path the build has (bench_block.cpp)
//   lact       LaCT's chunk loop per chunk size, and a LaCT model against full attention (bench_lact.cpp)
// block and lact also build as programs of their own for machines that build the kernels only.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom {

struct TrainBenchArgs {
  std::string json_out;
  int64_t steps = 3;
  std::vector<int64_t> d_models = {128, 256, 512};
  int64_t seq_len = 4096;
};
int run_bench_train(const TrainBenchArgs& args);

struct CommBenchArgs {
  std::string json_out;
  int64_t min_bytes = 4 << 10, max_bytes = 256 << 20;  // sizes go up by 4x
  int64_t reps = 5;                                     // at least this many timed repetitions
  int64_t overlap_bytes = 64 << 20;
};
int run_bench_comm(const CommBenchArgs& args);

struct AttentionBenchArgs {
  std::string json_out;
  std::vector<int64_t> seq_lens = {4096, 8192};
  std::vector<int64_t> kv_heads = {4, 1};  // MHA and GQA 4:1
  int64_t heads = 4, head_dim = 32, reps = 3, warmups = 1;
};
int run_bench_attention(const AttentionBenchArgs& args);

struct TensorBenchArgs {
  std::string json_out;
  std::vector<int64_t> seq_lens = {4096, 8192, 16384};
  int64_t d_model = 512, layers = 2, reps = 3, warmups = 1;
};
int run_bench_tensor(const TensorBenchArgs& args);

struct PlacementBenchArgs {
  std::string json_out;
  bool simulate = false;
  // --train: real training steps of `config` under uniform and zeppelin placement.
  bool train = false;
  std::string config;
  std::vector<std::string> overrides;
  int64_t warmups = 1;
  std::vector<std::string> topologies = {"configs/topology/a800-4nic.yaml", "configs/topology/h800-8nic.yaml",
                                         "configs/topology/h200-8nic.yaml"};
  std::vector<int> gpus = {16, 32, 64, 128};
  int cp = 16;  // the uniform baseline's context-parallel group: two nodes of 8
  int64_t d_model = 4096, kv_width = 4096, ffn = 11008, layers = 32;  // Llama 7B
  double flops_per_s = 200e12;
  int64_t tokens_per_gpu = 32768, max_length = 131072, max_tokens_per_rank = 32768, steps = 10;
  uint64_t seed = 1;
};
int run_bench_placement(const PlacementBenchArgs& args);
int run_bench_placement_train(const PlacementBenchArgs& args);

struct CalibrateArgs {
  std::string config, out;
  std::vector<std::string> overrides;
  std::vector<int64_t> lengths;  // empty: train.seq_len / 4, / 2 and itself
  int nics_per_node = 1;         // what the file says; not measurable from the ranks
  int64_t bytes = 64 << 20;      // exchanged per link measurement
  int reps = 5;
};
int run_bench_calibrate(const CalibrateArgs& args);

struct ChunkwiseBenchArgs {
  std::string json_out;
  std::vector<int64_t> lengths = {1024, 2048, 4096, 8192, 16384};
  int64_t chunk_size = 512, d_model = 128, layers = 2, reps = 1;
  double budget = 0.125;     // SpaCO: fraction of chunks visited
  double headroom_mb = 64;   // the cap: the baseline process plus this much
  std::string child;         // internal: measure this strategy in this process
  int64_t child_length = 0;
};
int run_bench_chunkwise(const ChunkwiseBenchArgs& args);

struct BlockBenchArgs {
  std::vector<int64_t> lengths;  // tokens of the block; empty: 1K, 4K (and 16K, 64K on a GPU)
};
int run_bench_block(const BlockBenchArgs& args);

struct LactBenchArgs {
  std::vector<int64_t> chunks = {16, 64, 256, 2048, 8192};
  int64_t tokens = 0;  // of the utilisation table (at most 256 chunks); 0: 16384 on a CPU, 65536 on a GPU
  int64_t heads = 0, head_dim = 0;  // fast-weight heads of the utilisation table; 0: 2 x 384 on a CPU, 4 x 512 on a GPU
  std::vector<int64_t> lengths = {2048, 4096, 8192, 16384};  // of the model table; empty: skip it
  int64_t reps = 3;
  std::string json_out;
};

int run_bench_lact(const LactBenchArgs& args);

}  // namespace loom
