// loom bench attention: forward + backward of one causal attention layer over one long document:
// local (the whole sequence on rank 0), ring and token_ring over the ranks it was launched on,
// side by side in one run. For each algorithm: its time, the time above an ideal split of the
// local time, the bytes rank 0 sends per link direction and the most any rank sends, and its time
// split into computing alone (every exchange completes at once without moving anything) and
// communicating alone (the same exchanges replayed with nothing computed between them), which gives
// the fraction of the communication hidden behind the computation: (compute + comm - time) / comm.
// Plus the block kernel's FLOP/s against the matmul ceiling measured in the same run.
//   launch/loom-run -n 2 -- loom bench attention [--seq-len 4096 8192] [--kv-heads 4 1]
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "launch/bench/benchmarks.h"
#include "launch/bench/exchange_replay.h"
#include "launch/bench/machine_ceiling.h"
#include "launch/bench/synced_timing.h"
#include "kernels/attention/local_attention.h"
#include "parallel/sequence/ring_attention.h"
#include "parallel/sequence/token_ring_attention.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/core/text_file.h"
#include "runtime/train/metrics_log.h"

namespace loom {
namespace {

struct Inputs {
  torch::Tensor q, k, v, dout;
};

// An attention algorithm over its two communicators (forward: the ring; back: TokenRing's returns).
using Algorithm = std::function<torch::Tensor(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                              Communicator& forward, Communicator& back)>;

// One fwd+bwd through `attend`, on fresh leaves.
void forward_backward(const Inputs& in, const Algorithm& attend, Communicator& forward, Communicator& back) {
  auto q = in.q.clone().requires_grad_(), k = in.k.clone().requires_grad_(), v = in.v.clone().requires_grad_();
  attend(q, k, v, forward, back).backward(in.dout);
}

struct Split {
  double time = 0, compute = 0, comm = 0;  // slowest rank, medians
  double waited = 0;                       // the longest any rank sat in wait() in the real run, median
  double mb_next = 0, mb_back = 0;         // sent by rank 0 per fwd+bwd
  double mb_busiest = 0;                   // the most any rank sends per fwd+bwd, both directions together
  double hidden() const { return comm > 0 ? std::clamp((compute + comm - time) / comm, 0.0, 1.0) : 1.0; }
};

// The three timings alternate, round by round, so that a shared machine's drift moves them alike.
Split measure(Communicator& world, Communicator& forward, Communicator& back, const Inputs& mine, const Algorithm& attend,
              const AttentionBenchArgs& args) {
  RecordingCommunicator recorded_forward(forward), recorded_back(back);
  forward_backward(mine, attend, recorded_forward, recorded_back);  // also a warm-up
  NullCommunicator null_forward(forward), null_back(back);
  ExchangeReplay replay({{&forward, &recorded_forward.recorded()}, {&back, &recorded_back.recorded()}});
  WaitTimingCommunicator timed_forward(forward), timed_back(back);
  auto real = [&] {
    timed_forward.reset();
    timed_back.reset();
    forward_backward(mine, attend, timed_forward, timed_back);
  };
  const std::vector<std::function<void()>> runs = {real, [&] { forward_backward(mine, attend, null_forward, null_back); },
                                                   [&] { replay.run(); }};
  for (int64_t w = 1; w < args.warmups; ++w)
    for (const auto& run : runs) run();
  std::vector<std::vector<double>> times(runs.size());
  std::vector<double> waited;  // in each round's real run (the other two leave the timed communicators alone)
  for (int64_t rep = 0; rep < args.reps; ++rep) {
    for (size_t i = 0; i < runs.size(); ++i) times[i].push_back(synced_time(world, runs[i]));
    waited.push_back(timed_forward.waited_seconds() + timed_back.waited_seconds());
  }
  Split s;
  s.time = median(times[0]);
  s.compute = median(times[1]);
  s.comm = median(times[2]);
  s.waited = max_over_ranks(world, median(waited));
  s.mb_next = static_cast<double>(recorded_forward.counters().of_kind("p2p").sent) / 1e6;
  s.mb_back = static_cast<double>(recorded_back.counters().of_kind("p2p").sent) / 1e6;
  s.mb_busiest = max_over_ranks(world, s.mb_next + s.mb_back);
  return s;
}

}  // namespace

int run_bench_attention(const AttentionBenchArgs& args) {
  auto world = mpi_world(3600);
  const int rank = world->rank(), n = world->size();
  auto forward = world->split(0, rank, "sp"), back = world->split(0, rank, "sp_back");
  const bool root = rank == 0;
  MachineCeiling machine;
  if (root) machine = measure_machine_ceiling();  // alone: the other ranks wait
  const double ceiling = machine.matmul_flops;
  barrier_now(*world);
  if (root) {
    std::printf("loom bench attention: causal, one document, float32, head dim %ld, %d rank(s), fwd+bwd of one layer "
                "(median of %ld)\n%s\n",
                args.head_dim, n, args.reps, machine.summary().c_str());
    std::printf("%7s %6s %-10s %9s %7s %9s %9s %9s %7s %9s %9s %9s %7s\n", "tokens", "H/G", "algorithm", "time_s", "over",
                "compute_s", "comm_s", "waited_s", "hidden", "MB_next", "MB_back", "MB_max", "kernel");
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
      double local_alone = 0;
      if (root) {
        const Algorithm whole = [&](auto& q, auto& k, auto& v, Communicator&, Communicator&) {
          return local_attention(q, k, v, AttentionMask::self(pos, doc), scale);
        };
        local_alone = median_seconds(static_cast<int>(args.reps), [&] { forward_backward(full, whole, *forward, *back); },
                                  static_cast<int>(args.warmups));
      }
      const double local_s = max_over_ranks(*world, local_alone);
      const double pairs = static_cast<double>(length) * static_cast<double>(length + 1) / 2;
      const double kernel_flops = 3.5 * 4.0 * static_cast<double>(d * h) * pairs / local_s;  // backward ~2.5x forward
      if (root) std::printf("%7ld %3ld/%-2ld %-10s %9.3f %7s %9s %9s %9s %7s %9s %9s %9s %7s\n", length, h, kv_heads, "local",
                            local_s, "", "", "", "", "", "", "", "", percent_of(kernel_flops, ceiling).c_str());
      nlohmann::json row = {{"tokens", length}, {"heads", h}, {"kv_heads", kv_heads}, {"local_s", local_s},
                            {"kernel_fraction_of_ceiling", root ? kernel_flops / ceiling : 0}};

      const SequenceLayout layout = make_sequence_layout(pos, doc, n, true);
      const Inputs mine{layout.take(full.q, 1, rank), layout.take(full.k, 1, rank), layout.take(full.v, 1, rank),
                        layout.take(full.dout, 1, rank)};
      const std::vector<std::pair<std::string, Algorithm>> ranked = {
          {"ring", [&](auto& q, auto& k, auto& v, Communicator& f, Communicator&) { return ring_attention(q, k, v, layout, scale, f); }},
          {"token_ring", [&](auto& q, auto& k, auto& v, Communicator& f, Communicator& b) {
             return token_ring_attention(q, k, v, layout, scale, f, b);
           }}};
      for (const auto& [name, attend] : ranked) {
        const Split s = measure(*world, *forward, *back, mine, attend, args);
        const double over = (s.time - local_s / n) / (local_s / n);
        if (root) {
          std::printf("%7ld %3ld/%-2ld %-10s %9.3f %6.0f%% %9.3f %9.3f %9.3f %6.0f%% %9.2f %9.2f %9.2f\n", length, h, kv_heads,
                      name.c_str(), s.time, 100 * over, s.compute, s.comm, s.waited, 100 * s.hidden(), s.mb_next, s.mb_back,
                      s.mb_busiest);
          std::fflush(stdout);
        }
        row[name] = {{"time_s", s.time}, {"compute_s", s.compute}, {"comm_s", s.comm}, {"waited_s", s.waited}, {"hidden", s.hidden()},
                     {"mb_sent_next", s.mb_next}, {"mb_sent_back", s.mb_back}, {"mb_sent_busiest_rank", s.mb_busiest}};
      }
      rows.push_back(row);
    }
  }
  if (root) {
    std::printf("over: time above local_s / ranks (exposed communication and imbalance). compute_s: the same with every "
                "exchange completing at once; comm_s: its exchanges alone; waited_s: the longest any rank's computation sat blocked "
                "on its exchanges in the real run; hidden = (compute + comm - time) / comm. MB: sent by "
                "rank 0 per fwd+bwd on the ring (ring: K/V and dK/dV to the next rank; token_ring: Q, and in the backward dO, D, "
                "lse, to the previous) and back to the owners (token_ring's partials); MB_max: the most any rank sends, both "
                "together\n");
    if (!args.json_out.empty()) write_text_file(args.json_out, nlohmann::json{{"ranks", n}, {"matmul_ceiling_flops", ceiling}, {"rows", rows}}.dump(2) + "\n");
  }
  return 0;
}

}  // namespace loom
