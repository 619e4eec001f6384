// loom bench calibrate: Zeppelin's cost model (docs/placement.md) measured on the ranks it runs on,
// written as a topology file for parallel.topology and `loom plan --topology`.
//   launch/loom-run [--cluster DIR] -n N -- loom bench calibrate --config C --out T.yaml
// Compute: every rank at once trains the config's model (forward and backward) on L tokens packed
// two ways, as one document and as documents of 16 tokens (whose attention is next to nothing), at
// several L; the medians over ranks are fitted to t = a P + b L, P the causal pairs the layout
// attends: a is the time of one attention pair, b of one token's linear layers (the short documents
// pin it down, the long ones a), and the rates the model charges for them follow from its FLOP
// counts. Links: two ranks of one node exchange a buffer both
// ways at once, as a ring edge does, for the intra-node rate, and the first ranks of two nodes for
// the NIC's; 8-byte exchanges give the latencies. Nodes are the hosts the ranks run on.
#include <ctime>
#include <cstdio>
#include <fstream>

#include "launch/bench/benchmarks.h"
#include "launch/bench/machine_ceiling.h"
#include "launch/bench/synced_timing.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/mesh.h"
#include "parallel/placement/topology.h"
#include "runtime/core/error.h"
#include "runtime/core/precision.h"
#include "runtime/model/llama.h"
#include "runtime/model/lm_loss.h"
#include "runtime/train/step_placement.h"

namespace loom {
namespace {

constexpr int64_t kShortDocument = 16;

// Causal (query, key) pairs of `length` tokens packed as documents of `document` tokens.
double causal_pairs(int64_t length, int64_t document) {
  const int64_t whole = length / document, rest = length % document;
  auto pairs = [](int64_t n) { return static_cast<double>(n) * static_cast<double>(n + 1) / 2; };
  return static_cast<double>(whole) * pairs(document) + pairs(rest);
}

// Forward and backward of `model` on `length` tokens packed as documents of `document` tokens,
// median seconds.
double train_seconds(Llama& model, int64_t length, int64_t document, int reps) {
  const auto tokens = torch::randint(model->config().vocab_size, {length}, torch::kInt64);
  const auto index = torch::arange(length, torch::kInt64);
  const auto positions = index.remainder(document), docs = index.div(document, "floor");
  return median_seconds(reps, [&] {
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    summed_loss(model->forward(tokens, positions, docs), tokens).backward();
  });
}

// Least squares of t = a x + b y over the points: the 2 x 2 normal equations.
std::pair<double, double> fit(const std::vector<double>& x, const std::vector<double>& y, const std::vector<double>& t) {
  double xx = 0, xy = 0, yy = 0, xt = 0, yt = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    xx += x[i] * x[i], xy += x[i] * y[i], yy += y[i] * y[i], xt += x[i] * t[i], yt += y[i] * t[i];
  }
  const double det = xx * yy - xy * xy;
  check(det > 0, "bench calibrate: the measurements do not separate attention from the linear layers");
  return {(xt * yy - yt * xy) / det, (yt * xx - xt * xy) / det};
}

struct Link {
  double gbyte_s = 0, latency_s = 0;
  bool measured() const { return gbyte_s > 0; }
};

// Ranks `a` and `b` exchange `bytes` both ways at once; every other rank waits.
Link measure_link(Communicator& world, int a, int b, int64_t bytes, int reps) {
  const int me = world.rank(), peer = me == a ? b : a;
  const bool in = me == a || me == b;
  auto exchange = [&](int64_t n) {
    const auto out = torch::ones({n}, torch::kUInt8), back = torch::empty({n}, torch::kUInt8);
    return [&world, in, peer, out, back] {
      if (in) world.exchange({send_to(peer, out), recv_from(peer, back)}).wait();
    };
  };
  Link link;
  link.latency_s = synced_median(world, reps, exchange(8));
  link.gbyte_s = static_cast<double>(bytes) / synced_median(world, reps, exchange(bytes)) / 1e9;
  return link;
}

std::string today() {
  char text[16];
  const std::time_t now = std::time(nullptr);
  std::strftime(text, sizeof text, "%Y-%m-%d", std::gmtime(&now));
  return text;
}

}  // namespace

int run_bench_calibrate(const CalibrateArgs& args) {
  const Config config = load_config(args.config, args.overrides);
  auto world_comm = mpi_world(600);
  const int world_size = world_comm->size();
  Mesh mesh(std::move(world_comm), MeshShape{world_size, 1, 1});
  Communicator& world = *mesh.host().world;

  // Nodes: the hosts, in rank order, each holding the same number of consecutive ranks.
  const auto& hosts = mesh.hosts();
  int per_node = 1;
  while (per_node < world_size && hosts[static_cast<size_t>(per_node)] == hosts[0]) ++per_node;
  check(world_size % per_node == 0, "bench calibrate: the hosts hold different numbers of ranks; launch as many on each");
  for (int r = 0; r < world_size; ++r)
    check(hosts[static_cast<size_t>(r)] == hosts[static_cast<size_t>(r / per_node * per_node)],
          "bench calibrate: rank " + std::to_string(r) + " sits on another host than its node's first rank; place ranks node by node");
  const int nodes = world_size / per_node;

  std::vector<int64_t> lengths = args.lengths;
  if (lengths.empty()) lengths = {config.train.seq_len / 4, config.train.seq_len / 2, config.train.seq_len};
  torch::manual_seed(config.run.seed);
  const Precision precision = resolve_precision(config);
  Llama model(config.model);
  model->to(precision.param);
  std::vector<double> pairs, tokens, seconds;
  std::vector<std::string> rows;
  for (const int64_t length : lengths) {
    check(length > 0 && length <= config.model.max_seq_len,
          "bench calibrate: length " + std::to_string(length) + " is outside [1, model.max_seq_len]");
    for (const int64_t document : {length, kShortDocument}) {
      train_seconds(model, length, document, 1);  // warm the allocator at this size
      auto mine = torch::tensor({train_seconds(model, length, document, args.reps)}, torch::kFloat64);
      auto all = torch::empty({world_size}, torch::kFloat64);
      world.all_gather(mine, all).wait();
      pairs.push_back(causal_pairs(length, document));
      tokens.push_back(static_cast<double>(length));
      seconds.push_back(median(std::vector<double>(all.data_ptr<double>(), all.data_ptr<double>() + world_size)));
      rows.push_back(std::to_string(length) + (document == length ? " (one document)" : " (documents of 16)"));
    }
  }
  const auto [a, b] = fit(pairs, tokens, seconds);
  char fitted[96];
  std::snprintf(fitted, sizeof fitted, "a = %.3g s per pair and b = %.3g s per token", a, b);
  check(a > 0 && b > 0, std::string("bench calibrate: the fit gave ") + fitted +
                            "; the machine was too noisy or attention too small a part at these lengths: give longer --lengths");
  const CostModel flops = placement_cost(config, Topology{});
  const double attention_rate = flops.attention_flops_per_pair / a, linear_rate = flops.linear_flops_per_token / b;

  Link intra, nic;
  if (per_node > 1) intra = measure_link(world, 0, 1, args.bytes, args.reps);
  if (nodes > 1) nic = measure_link(world, 0, per_node, args.bytes, args.reps);
  if (!mesh.is_root()) return 0;

  std::printf("loom bench calibrate: %d node(s) x %d rank(s) (%s), model of %s, %s\n", nodes, per_node, hosts[0].c_str(),
              args.config.c_str(), precision.describe().c_str());
  std::printf("%-26s %14s %14s\n", "tokens", "measured_s", "fit_s");
  for (size_t i = 0; i < rows.size(); ++i)
    std::printf("%-26s %14.5g %14.5g\n", rows[i].c_str(), seconds[i], a * pairs[i] + b * tokens[i]);
  std::printf("a = %.4g s per attention pair (%.3g FLOP/s), b = %.4g s per token of linear layers (%.3g FLOP/s)\n", a,
              attention_rate, b, linear_rate);
  if (intra.measured())
    std::printf("intra-node: %.3g GB/s each way, latency %.3g us\n", intra.gbyte_s, intra.latency_s * 1e6);
  if (nic.measured()) std::printf("across nodes: %.3g GB/s each way, latency %.3g us\n", nic.gbyte_s, nic.latency_s * 1e6);

  std::ofstream out(args.out);
  check(out.good(), "cannot write '" + args.out + "'");
  out << "# Measured by `loom bench calibrate --config " << args.config << "` on " << hosts[0] << ", " << today() << ":\n"
      << "# a = " << a << " s per attention pair, b = " << b << " s per token (lengths";
  for (const int64_t l : lengths) out << " " << l;
  out << ").\n";
  if (!nic.measured() && nodes == 1) out << "# One node: the NIC keys keep their defaults.\n";
  out << "name: calibrated on " << hosts[0] << " (" << nodes << " x " << per_node << ")\n"
      << "nodes: " << nodes << "\nranks_per_node: " << per_node << "\nnics_per_node: " << args.nics_per_node << "\n";
  if (nic.measured()) out << "nic_gbyte_s: " << nic.gbyte_s << "\nnic_latency_us: " << nic.latency_s * 1e6 << "\n";
  if (intra.measured()) out << "intra_gbyte_s: " << intra.gbyte_s << "\nintra_latency_us: " << intra.latency_s * 1e6 << "\n";
  out << "rank_tflops: " << linear_rate / 1e12 << "\nattention_tflops: " << attention_rate / 1e12 << "\n";
  check(out.good(), "writing '" + args.out + "' failed");
  std::printf("wrote %s\n", args.out.c_str());
  return 0;
}

}  // namespace loom
