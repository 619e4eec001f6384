// loom train --dry-run: checks a config against a world size without starting that many ranks (or
// any training) and shows what each rank would hold: the mesh, tensor shapes, parameter count and
// an estimate of memory per rank.
#include <cmath>
#include <cstdio>
#include <regex>

#include "launch/commands.h"
#include "optim/training_optimizer.h"
#include "parallel/data/gradient_reducer.h"
#include "parallel/sequence/attention_choice.h"
#include "parallel/mesh.h"
#include "runtime/core/error.h"
#include "runtime/core/precision.h"
#include "runtime/model/llama.h"
#include "runtime/model/parallelize.h"
#include "runtime/train/metrics_log.h"
#include "runtime/train/step_placement.h"
#include "runtime/train/trainer.h"

namespace loom {
namespace {

int64_t default_world(const ParallelConfig& p) {
  return (p.dp == ParallelConfig::kAuto ? 1 : p.dp) * p.sp * p.tp;
}

std::string bytes_text(double bytes) { return human_count(bytes) + "B"; }

std::string shape_text(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

struct ParameterCount {
  int64_t total = 0, muon = 0;  // muon: what train.optimizer: muon gives to Muon (one moment, not two)
  int64_t rank0 = 0;            // what tp rank 0 holds of them
};

// The model's tensors as tp rank 0 holds them, from a model of the same widths with one layer of each
// kind (a 70B config must not allocate 70B parameters to print its shapes), each layer standing for
// all of its kind.
ParameterCount print_tensors(const ModelConfig& config, int64_t tp) {
  const int64_t lact_layers = config.lact.every > 0 ? config.n_layers / config.lact.every : 0;
  const int64_t attention_layers = config.n_layers - lact_layers;
  ModelConfig sample = config;
  sample.n_layers = lact_layers > 0 && attention_layers > 0 ? config.lact.every : 1;  // layer every-1 is LaCT
  Llama model(sample);
  ParameterCount count;
  const std::regex layer(R"(\.layers\.(\d+)\.)");
  for (const auto& [name, p] : model->parameter_list()) {
    std::smatch m;
    int64_t copies = 1;
    std::string shown = name;
    if (std::regex_search(name, m, layer)) {
      const int64_t i = std::stoll(m[1]);
      const bool lact = sample.is_lact_layer(i);
      if (!lact && i > 0) continue;  // layer 0 stands for the attention layers
      copies = lact ? lact_layers : attention_layers;
      const std::string which = lact_layers == 0 ? "0.." + std::to_string(config.n_layers - 1) : lact ? "LaCT" : "attention";
      shown = std::regex_replace(name, layer, ".layers.{" + which + "}.");
    }
    const torch::Tensor mine = take_shard(p, tensor_parallel_shard(name, p.sizes(), tp, 0));
    count.total += p.numel() * copies;
    count.rank0 += mine.numel() * copies;
    if (is_muon_parameter(name, p)) count.muon += p.numel() * copies;
    std::printf("  %-55s %-16s x%ld\n", shown.c_str(), shape_text(mine).c_str(), copies);
  }
  return count;
}

// Saved activations of one micro-batch, per token and layer: the inputs of both norms, q, k, v,
// attention output and log-sum-exp, o_proj input, and in the MLP gate, silu(gate), up and their
// product (gate and up alone with selective checkpointing); plus the logits and their log-softmax.
// Full checkpointing keeps each layer's two inputs and one layer's activations while it is
// recomputed. An estimate, not a measurement.
// A LaCT layer adds its fast-weight branch: the fast q, k, v, and per updating token the gate, up,
// hidden and pulled-back rows and the two gradients (six hidden-size rows), unless
// model.lact.checkpoint recomputes them; and per chunk the fast weights it read (with momentum,
// also the velocities), in float32.
double activation_bytes(const Config& c, int64_t tokens, double element) {
  const auto& m = c.model;
  const std::string& checkpoint = c.train.activation_checkpoint;
  const double kv = static_cast<double>(m.n_kv_heads * m.head_dim());
  const double mlp_rows = checkpoint == "selective" ? 2.0 : 4.0;
  const double per_layer = 5.0 * m.d_model + 2.0 * kv + mlp_rows * m.ffn_dim() + m.n_heads;
  const int64_t lact_layers = m.lact.every > 0 ? m.n_layers / m.lact.every : 0;
  const double hidden = static_cast<double>(m.d_model * m.lact.inter_multi);
  const double fast_rows = 3.0 * m.d_model + (m.lact.checkpoint ? 0.0 : 6.0 * hidden);
  const double weights_per_chunk = 3.0 * m.d_model * hidden / m.lact.heads * (m.lact.momentum ? 2 : 1);
  const double fast = static_cast<double>(tokens) * fast_rows * 4.0 +
                      std::ceil(static_cast<double>(tokens) / m.lact.chunk) * weights_per_chunk * 4.0;
  const double logits = 2.0 * m.vocab_size * 4.0;
  const auto n = static_cast<double>(tokens);
  if (checkpoint == "full")
    return n * ((2.0 * m.d_model * m.n_layers + per_layer) * element + logits) + (lact_layers > 0 ? fast : 0.0);
  return n * (per_layer * m.n_layers * element + logits) + lact_layers * fast;
}

// Chunk-wise backprop keeps the activations of its rows of one chunk (1/sp of it), plus every
// layer's K/V of the whole sequence (all-gathered under sequence parallelism) and, at most, as much
// again for their gradients.
double chunkwise_bytes(const Config& c, int64_t sp, double element) {
  const auto& m = c.model;
  const int64_t tokens = c.train.seq_len;
  const double kv_cache = 2.0 * static_cast<double>(m.n_layers * m.n_kv_heads * m.head_dim()) * element;
  return activation_bytes(c, (std::min(tokens, c.train.chunk_size) + sp - 1) / sp, element) +
         2.0 * kv_cache * static_cast<double>(tokens);
}

// What one rank holds, in bytes, for a config on a mesh.
struct MemoryEstimate {
  int64_t zero = 0;  // the stage in effect (0 with one replica)
  double weights = 0, gradients = 0, masters = 0, moments = 0, buckets = 0, activations = 0;
  double total() const { return weights + gradients + masters + moments + buckets + activations; }
};

MemoryEstimate estimate_memory(const Config& config, const MeshShape& shape, const Precision& precision,
                               const ParameterCount& count, int64_t tokens) {
  const auto params = static_cast<double>(count.rank0);
  const auto element = static_cast<double>(precision.param_bytes());
  const auto master = static_cast<double>(c10::elementSize(precision.master));
  MemoryEstimate m;
  m.weights = params * element;
  // Separate masters (bfloat16 training) are float32 copies; the moments and buckets take their dtype.
  // ZeRO keeps 1/n of the masters and moments on each of the n replicas (about 1/n of the moments
  // with Muon's whole parameters, whose masters stay whole), and stage 2 adds its part of each
  // bucket's sum. Stage 2 keeps no .grad and only the buckets in flight (gradient_reducer.h),
  // reducing after every backward (every chunk's under chunk-wise backprop).
  m.zero = shape.dp * shape.sp > 1 ? config.parallel.zero : 0;
  const double replicas = m.zero > 0 ? static_cast<double>(shape.dp * shape.sp) : 1.0;
  const bool muon = config.train.optimizer == "muon";
  m.masters = (precision.master == precision.param ? 0 : params * master) / (muon ? 1.0 : replicas);
  const double buckets = params * static_cast<double>(c10::elementSize(precision.grad_reduce));
  const bool sharded_gradients = m.zero == 2;
  // Muon's stage 2 brings each parameter's whole gradient to its owner: about 1/n of them.
  m.gradients = !sharded_gradients ? m.weights : muon ? params * master / replicas : 0;
  if (sharded_gradients) {
    const double in_flight = static_cast<double>(GradientReducer::kInFlight + 1) * config.parallel.bucket_mb * (1 << 20);
    m.buckets = std::min(buckets, in_flight) + buckets / replicas;
  } else {
    m.buckets = m.zero > 0 ? buckets * (1 + (m.zero == 2 ? 1 / replicas : 0)) : shape.world() > 1 ? buckets : 0;
  }
  const double muon_moments = muon ? static_cast<double>(count.muon) * master : 0;
  m.moments = (2 * params * master - muon_moments) / replicas;  // AdamW keeps two per parameter, Muon one
  // Tensor parallelism splits the heads, the MLP's columns and the residual stream's rows.
  m.activations = (config.train.strategy == "full" ? activation_bytes(config, tokens, element)
                                                   : chunkwise_bytes(config, shape.sp, element)) /
                  static_cast<double>(shape.tp);
  return m;
}

// "seco", "full", "full, selective checkpointing": what the activations estimate is for.
std::string activations_kind(const Config& config) {
  const std::string& checkpoint = config.train.activation_checkpoint;
  return config.train.strategy + (checkpoint == "none" ? "" : ", " + checkpoint + " checkpointing");
}

// The same estimate for every ZeRO stage and backprop this config could switch to ("-": refused
// with the rest of the config, as the validation says).
void print_memory_table(const Config& config, const MeshShape& shape, const Precision& precision,
                        const ParameterCount& count, int64_t tokens) {
  std::printf("memory per rank by parallel.zero and train.strategy (estimate):\n%10s %12s %12s\n", "", "full",
              "seco/spaco");
  for (const int zero : {0, 1, 2}) {
    std::printf("%10s", ("zero " + std::to_string(zero)).c_str());
    for (const char* strategy : {"full", "seco"}) {
      std::string cell = "-";
      try {
        const Config other = parse_config(to_yaml(config), "dry run",
                                          {"parallel.zero=" + std::to_string(zero), std::string("train.strategy=") + strategy});
        cell = bytes_text(estimate_memory(other, shape, precision, count, tokens).total());
      } catch (const Error&) {  // the combination is refused: its cell stays "-"
      }
      std::printf(" %12s", cell.c_str());
    }
    std::printf("\n");
  }
}

}  // namespace

int run_train_dry(const TrainArgs& args) {
  const Config config = load_config(args.config, args.overrides);
  const int64_t world = args.world > 0 ? args.world : default_world(config.parallel);
  const MeshShape shape = resolve_mesh_shape(config, world);
  std::printf("dry run of %s for %ld ranks: mesh dp %ld x sp %ld x tp %ld (rank order: tp fastest, then sp, then dp)\n",
              args.config.c_str(), world, shape.dp, shape.sp, shape.tp);
  for (int64_t r = 0; r < std::min<int64_t>(world, 16); ++r) {
    const MeshCoord c = mesh_coord(r, shape);
    std::printf("  rank %ld: dp %ld sp %ld tp %ld\n", r, c.dp, c.sp, c.tp);
  }
  if (world > 16) std::printf("  ... (%ld more)\n", world - 16);

  if (shape.tp == 1) std::printf("tensors on every rank (replicated over dp x sp):\n");
  else std::printf("tensors of tp rank 0 (the other tp ranks hold slices of the same shapes; replicated over dp x sp):\n");
  const ParameterCount count = print_tensors(config.model, shape.tp);
  const Precision precision = resolve_precision(config);
  const int64_t micro = config.accumulation_steps() / shape.dp;
  const int64_t chunks = shape.sp > 1 ? 2 * shape.sp : 1;  // the zigzag layout pads to a multiple of 2 sp
  const int64_t tokens = (config.train.seq_len + chunks - 1) / chunks * chunks / shape.sp;
  std::printf("parameters: %s (%s in %s)", human_count(static_cast<double>(count.total)).c_str(),
              bytes_text(static_cast<double>(count.total * precision.param_bytes())).c_str(), config.train.dtype.c_str());
  if (shape.tp > 1) std::printf("; %s on each tp rank", human_count(static_cast<double>(count.rank0)).c_str());
  std::printf("\n");
  const bool placed = config.parallel.placement == "zeppelin";
  if (placed) {
    const Topology topology = placement_topology(config, shape.dp * shape.sp);
    std::printf("placement: zeppelin over the %ld dp x sp ranks of %s (%d x %d); a rank computes its share of the "
                "step's documents, at most %ld tokens of one at a time\n",
                shape.dp * shape.sp, topology.name.c_str(), topology.nodes, topology.ranks_per_node, placement_cap(config));
  } else {
    std::printf("per rank and step: %ld micro-batch(es) of %ld tokens\n", micro, tokens);
  }
  const AttentionChoice attention = choose_attention(config, placed ? shape.dp * shape.sp : shape.sp);
  std::printf("attention: %s (%s)\n", attention.algorithm.c_str(), attention.reason.c_str());

  const MemoryEstimate chosen = estimate_memory(config, shape, precision, count, tokens);
  std::printf("memory per rank (estimate%s): weights %s + gradients %s + master weights %s + %s moments %s + reduction "
              "buckets %s + activations of one micro-batch (%s) %s = %s\n",
              chosen.zero > 0 ? (", ZeRO stage " + std::to_string(chosen.zero) + " over " + std::to_string(shape.dp * shape.sp)).c_str() : "",
              bytes_text(chosen.weights).c_str(), bytes_text(chosen.gradients).c_str(), bytes_text(chosen.masters).c_str(),
              config.train.optimizer.c_str(), bytes_text(chosen.moments).c_str(), bytes_text(chosen.buckets).c_str(),
              activations_kind(config).c_str(), bytes_text(chosen.activations).c_str(), bytes_text(chosen.total()).c_str());
  print_memory_table(config, shape, precision, count, tokens);
  check_trainable(config, shape);
  std::printf("the config is valid for %ld ranks\n", world);
  return 0;
}

}  // namespace loom
