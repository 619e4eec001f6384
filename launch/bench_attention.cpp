// loom bench attention: forward + backward of one causal attention layer over one long document:
// local (the whole sequence on rank 0), ring and token_ring over the ranks it was launched on,
// side by side in one run, with the bytes each rank sends per link direction, the time above an
// ideal split of the local time (communication not hidden, plus imbalance), and the block kernel's
// FLOP/s against the matmul ceiling measured in the same run.
//   launch/loom-run -n 2 -- loom bench attention [--seq-len 4096 8192] [--kv-heads 4 1]
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "launch/commands.h"
#include "launch/machine_ceiling.h"
#include "launch/synced_timing.h"
#include "parallel/attention/local_attention.h"
#include "parallel/attention/ring_attention.h"
#include "parallel/attention/token_ring_attention.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/train/metrics_log.h"

namespace loom {
namespace {

struct Inputs {
  torch::Tensor q, k, v, dout;
};

// One fwd+bwd through `attend`, on fresh leaves.
void forward_backward(const Inputs& in, const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>& attend) {
  auto q = in.q.clone().requires_grad_(), k = in.k.clone().requires_grad_(), v = in.v.clone().requires_grad_();
  attend(q, k, v).backward(in.dout);
}

}  // namespace

int run_bench_attention(const BenchAttentionArgs& args) {
  auto world = mpi_world(3600);
  const int rank = world->rank(), n = world->size();
  auto forward = world->split(0, rank, "sp"), back = world->split(0, rank, "sp_back");
  const bool root = rank == 0;
  double ceiling = 0;
  if (root) ceiling = measure_machine_ceiling().matmul_flops;  // alone: the other ranks wait
  barrier_now(*world);
  if (root) {
    std::printf("loom bench attention: causal, one document, float32, head dim %ld, %d rank(s), fwd+bwd of one layer "
                "(median of %ld); matmul ceiling %sFLOP/s\n",
                args.head_dim, n, args.reps, human_count(ceiling).c_str());
    std::printf("%7s %6s %9s %7s %9s %11s %9s %9s %11s %11s %11s\n", "tokens", "H/G", "local_s", "kernel", "ring_s",
                "token_ring_s", "ring_over", "tr_over", "ring_MB", "tr_next_MB", "tr_back_MB");
  }
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t length : args.seq_lens) {
    for (int64_t kv_heads : args.kv_heads) {
      torch::manual_seed(0);
      const int64_t h = args.heads, d = args.head_dim;
      const Inputs full{torch::randn({h, length, d}), torch::randn({kv_heads, length, d}), torch::randn({kv_heads, length, d}),
                        torch::randn({h, length, d})};
      const auto pos = torch::arange(length, torch::kInt64), doc = torch::zeros({length}, torch::kInt64);
      const double scale = 1.0 / std::sqrt(static_cast<double>(d));
      // Local: rank 0 alone on the whole sequence.
      auto local = torch::zeros({1}, torch::kFloat64);
      if (root) {
        local[0] = median_seconds(static_cast<int>(args.reps), [&] {
          forward_backward(full, [&](auto& q, auto& k, auto& v) { return local_attention(q, k, v, AttentionMask::self(pos, doc), scale); });
        });
      }
      all_reduce_now(*world, local, ReduceOp::kMax);
      const double local_s = local.item<double>();
      const SequenceLayout layout = make_sequence_layout(pos, doc, n, true);
      const Inputs mine{layout.take(full.q, 1, rank), layout.take(full.k, 1, rank), layout.take(full.v, 1, rank),
                        layout.take(full.dout, 1, rank)};
      const int64_t calls = args.reps + 1;
      forward->counters().reset();
      const double ring_s = synced_median(*world, args.reps, [&] {
        forward_backward(mine, [&](auto& q, auto& k, auto& v) { return ring_attention(q, k, v, layout, scale, *forward); });
      });
      const double ring_mb = static_cast<double>(forward->counters().of_kind("p2p").sent) / calls / 1e6;
      forward->counters().reset();
      back->counters().reset();
      const double token_ring_s = synced_median(*world, args.reps, [&] {
        forward_backward(mine, [&](auto& q, auto& k, auto& v) { return token_ring_attention(q, k, v, layout, scale, *forward, *back); });
      });
      const double q_mb = static_cast<double>(forward->counters().of_kind("p2p").sent) / calls / 1e6;
      const double back_mb = static_cast<double>(back->counters().of_kind("p2p").sent) / calls / 1e6;
      const double pairs = static_cast<double>(length) * static_cast<double>(length + 1) / 2;
      const double kernel_flops = 3.5 * 4.0 * static_cast<double>(d * h) * pairs / local_s;  // backward ~2.5x forward
      const double ideal = local_s / n;
      if (root) {
        std::printf("%7ld %3ld/%-2ld %9.3f %6.0f%% %9.3f %11.3f %8.0f%% %8.0f%% %11.2f %11.2f %11.2f\n", length, h, kv_heads,
                    local_s, 100 * kernel_flops / ceiling, ring_s, token_ring_s, 100 * (ring_s - ideal) / ideal,
                    100 * (token_ring_s - ideal) / ideal, ring_mb, q_mb, back_mb);
        std::fflush(stdout);
      }
      rows.push_back({{"tokens", length}, {"heads", h}, {"kv_heads", kv_heads}, {"local_s", local_s}, {"ring_s", ring_s},
                      {"token_ring_s", token_ring_s}, {"kernel_fraction_of_ceiling", kernel_flops / ceiling},
                      {"ring_mb_sent", ring_mb}, {"token_ring_q_mb_sent", q_mb}, {"token_ring_back_mb_sent", back_mb}});
    }
  }
  if (root) {
    std::printf("ring_over / tr_over: time above local_s / ranks (exposed communication and imbalance). MB: sent by rank 0 "
                "per fwd+bwd; ring to the next rank, token_ring to the next rank (Q; in the backward also dO, D, lse) and back to owners (partials)\n");
    if (!args.json_out.empty()) std::ofstream(args.json_out) << nlohmann::json{{"ranks", n}, {"matmul_ceiling_flops", ceiling}, {"rows", rows}}.dump(2) << "\n";
  }
  return 0;
}

}  // namespace loom
