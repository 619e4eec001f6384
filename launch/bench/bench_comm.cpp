// loom bench comm: every collective of Loom's communicator next to the same raw MPI call, message
// sizes 4 KiB .. 256 MiB, in one run on the ranks it was launched on; then an overlap figure:
// compute alone, communication alone, and both at once. Start it on several ranks:
//   launch/loom-run -n 2 -- loom bench comm
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>

#include "launch/bench/benchmarks.h"
#include "launch/bench/synced_timing.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/core/error.h"
#include "runtime/core/text_file.h"

namespace loom {
namespace {

struct Case {
  std::string op;
  std::function<void()> loom, raw;
};

// The cases for messages of `bytes` per rank (float32 elements).
std::vector<Case> cases(Communicator& comm, int64_t bytes) {
  const int n = comm.size(), rank = comm.rank();
  const int64_t count = bytes / 4 / n * n;
  const int c = static_cast<int>(count), part = static_cast<int>(count / n);
  auto a = torch::ones({count}), b = torch::empty({count}), gathered = torch::empty({count * n});
  auto shard = torch::empty({count / n});
  const std::vector<int64_t> even(n, count / n);
  const int next = (rank + 1) % n, prev = (rank + n - 1) % n;
  float *pa = a.data_ptr<float>(), *pb = b.data_ptr<float>(), *pg = gathered.data_ptr<float>(), *ps = shard.data_ptr<float>();
  MPI_Comm w = MPI_COMM_WORLD;
  return {
      {"all_reduce", [=, &comm] { comm.all_reduce(a, ReduceOp::kSum).wait(); },
       [=] { MPI_Allreduce(MPI_IN_PLACE, pa, c, MPI_FLOAT, MPI_SUM, w); }},
      {"reduce_scatter", [=, &comm] { comm.reduce_scatter(a, shard, ReduceOp::kSum).wait(); },
       [=] { MPI_Reduce_scatter_block(pa, ps, part, MPI_FLOAT, MPI_SUM, w); }},
      {"all_gather", [=, &comm] { comm.all_gather(a, gathered).wait(); },
       [=] { MPI_Allgather(pa, c, MPI_FLOAT, pg, c, MPI_FLOAT, w); }},
      {"all_to_all", [=, &comm] { comm.all_to_all(a, even, b, even).wait(); },
       [=] { MPI_Alltoall(pa, part, MPI_FLOAT, pb, part, MPI_FLOAT, w); }},
      {"broadcast", [=, &comm] { comm.broadcast(a, 0).wait(); }, [=] { MPI_Bcast(pa, c, MPI_FLOAT, 0, w); }},
      {"ring_p2p", [=, &comm] { comm.exchange({send_to(next, a), recv_from(prev, b)}).wait(); },
       [=] { MPI_Sendrecv(pa, c, MPI_FLOAT, next, 0, pb, c, MPI_FLOAT, prev, 0, w, MPI_STATUS_IGNORE); }},
  };
}

// A fixed amount of matmul work on this thread (the same product each time: no drift into
// denormal numbers, which would slow it down).
void compute(int64_t iterations, const torch::Tensor& m) {
  auto out = torch::empty_like(m);
  for (int64_t i = 0; i < iterations; ++i) torch::mm_out(out, m, m);
}

// Compute alone, communication alone and both at once, measured in alternation so that the
// machine's drift falls on all three alike.
nlohmann::json measure_overlap(Communicator& comm, int64_t bytes, int reps) {
  auto message = torch::ones({bytes / 4});
  auto m = torch::randn({256, 256});
  auto communicate = [&] { comm.all_reduce(message, ReduceOp::kSum).wait(); };
  // Calibrate the compute to take about as long as the communication: the hardest case to hide.
  const double comm_estimate = synced_median(comm, 3, communicate);
  const double one = synced_median(comm, 3, [&] { compute(20, m); }) / 20;
  const auto iterations = std::max<int64_t>(1, static_cast<int64_t>(comm_estimate / one));
  auto work = [&] { compute(iterations, m); };
  auto both = [&] {
    auto handle = comm.all_reduce(message, ReduceOp::kSum);
    compute(iterations, m);
    handle.wait();
  };
  std::vector<double> comm_s, compute_s, both_s;
  for (int i = 0; i < reps; ++i) {
    comm_s.push_back(synced_time(comm, communicate));
    compute_s.push_back(synced_time(comm, work));
    both_s.push_back(synced_time(comm, both));
  }
  const double c = median(comm_s), k = median(compute_s), b = median(both_s);
  return {{"message_bytes", bytes}, {"compute_s", k}, {"comm_s", c}, {"both_s", b}, {"both_over_max", b / std::max(k, c)}};
}

}  // namespace

int run_bench_comm(const CommBenchArgs& args) {
  auto comm = mpi_world(600);
  const bool root = comm->rank() == 0;
  check(comm->size() > 1, "loom bench comm needs several ranks: launch/loom-run -n 2 -- loom bench comm");
  if (root) {
    std::printf("loom bench comm: %d ranks, median of the slowest rank's time, float32 messages (bytes per rank)\n",
                comm->size());
    std::printf("%-15s %10s %12s %12s %11s %11s %8s\n", "operation", "bytes", "loom", "raw MPI", "loom GB/s", "MPI GB/s",
                "ratio");
  }
  nlohmann::json results = nlohmann::json::array();
  for (int64_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 4) {
    const int reps = static_cast<int>(std::clamp<int64_t>((64 << 20) / bytes, args.reps, 50));
    for (auto& c : cases(*comm, bytes)) {
      // Alternating the two in rounds spreads the machine's drift over both.
      double loom_s = 0, raw_s = 0;
      for (int round = 0; round < 2; ++round) {
        loom_s += synced_median(*comm, reps, c.loom) / 2;
        raw_s += synced_median(*comm, reps, c.raw) / 2;
      }
      const double gb = static_cast<double>(bytes) / 1e9;
      if (root) {
        std::printf("%-15s %10ld %10.1fus %10.1fus %11.3f %11.3f %7.2fx\n", c.op.c_str(), bytes, loom_s * 1e6, raw_s * 1e6,
                    gb / loom_s, gb / raw_s, raw_s / loom_s);
        std::fflush(stdout);
      }
      results.push_back({{"op", c.op}, {"bytes", bytes}, {"loom_s", loom_s}, {"mpi_s", raw_s}, {"ratio", raw_s / loom_s}});
    }
  }
  const auto overlap = measure_overlap(*comm, args.overlap_bytes, 9);
  if (root) {
    std::printf("overlap (all_reduce of %ld bytes while this thread computes): compute %.1f ms, communication %.1f ms, "
                "both %.1f ms = %.2f x the longer of the two\n",
                args.overlap_bytes, overlap["compute_s"].get<double>() * 1e3, overlap["comm_s"].get<double>() * 1e3,
                overlap["both_s"].get<double>() * 1e3, overlap["both_over_max"].get<double>());
    if (!args.json_out.empty()) write_text_file(args.json_out, nlohmann::json{{"ranks", comm->size()}, {"collectives", results}, {"overlap", overlap}}.dump(2) + "\n");
  }
  return 0;
}

}  // namespace loom
