// Zeppelin's placement (parallel/placement/): plans that cover every token of every sequence exactly
// once on ranks of the mesh, rings that stay where their span says, short sequences kept whole,
// the same plan on every call, and a cost model whose crossover is where it claims.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include "parallel/placement/planner.h"
#include "parallel/placement/remap_plan.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

Topology cluster(int nodes, int ranks_per_node, int nics_per_node) {
  Topology t;
  t.nodes = nodes;
  t.ranks_per_node = ranks_per_node;
  t.nics_per_node = nics_per_node;
  t.nic_gbyte_s = 25;
  t.intra_gbyte_s = 200;
  return t;
}

// A 7B-like model on a GPU of 150 TFLOP/s.
CostModel model() { return CostModel::llama(4096, 4096, 11008, 32, 2, 150e12); }

// Length mixes: shorter than a group, equal to it, much longer, and one giant among many tiny.
std::vector<std::vector<int64_t>> mixes(int world) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> tail(std::log(4096.0), 1.2);
  std::vector<int64_t> lognormal;
  for (int i = 0; i < 300; ++i) lognormal.push_back(std::clamp<int64_t>(static_cast<int64_t>(tail(rng)), 1, 262144));
  std::vector<int64_t> giant_and_tiny(200, 37);
  giant_and_tiny.push_back(1 << 18);
  return {{1, 2, 3}, std::vector<int64_t>(world, world), {1 << 17, 1 << 16, 5000, 3}, lognormal, giant_and_tiny};
}

void expect_valid(const StepPlan& plan, const std::vector<int64_t>& lengths, const Topology& t, const std::string& what) {
  std::vector<int> seen(lengths.size(), 0);
  for (const Placement& p : plan.placements) {
    ASSERT_LT(p.sequence, static_cast<int64_t>(lengths.size())) << what;
    ++seen[p.sequence];
    ASSERT_FALSE(p.ranks.empty()) << what;
    std::set<int> nodes;
    for (const int r : p.ranks) {
      ASSERT_GE(r, 0) << what;
      ASSERT_LT(r, t.world()) << what;
      nodes.insert(t.node_of(r));
    }
    EXPECT_EQ(std::set<int>(p.ranks.begin(), p.ranks.end()).size(), p.ranks.size()) << what << ": a rank twice in a ring";
    if (p.span == Span::kLocal) EXPECT_EQ(p.ranks.size(), 1u) << what;
    if (p.span == Span::kIntraNode) EXPECT_EQ(nodes.size(), 1u) << what << ": an intra-node ring crosses nodes";
    if (p.span == Span::kInterNode) {
      EXPECT_GT(nodes.size(), 1u) << what;
      EXPECT_EQ(p.ranks.size(), nodes.size() * t.ranks_per_node) << what << ": an inter-node ring takes whole nodes";
    }
    // Every token exactly once.
    std::vector<int> covered(lengths[p.sequence], 0);
    for (int i = 0; i < static_cast<int>(p.ranks.size()); ++i)
      for (const auto& [begin, end] : zigzag_ranges(lengths[p.sequence], static_cast<int>(p.ranks.size()), i))
        for (int64_t j = begin; j < end; ++j) ++covered[j];
    EXPECT_EQ(std::count(covered.begin(), covered.end(), 1), lengths[p.sequence]) << what << ": sequence " << p.sequence;
  }
  for (size_t s = 0; s < lengths.size(); ++s) EXPECT_EQ(seen[s], 1) << what << ": sequence " << s << " placed " << seen[s] << " times";
  // Queue order: inter-node rings, then intra-node rings, then whole sequences.
  for (size_t i = 1; i < plan.placements.size(); ++i)
    EXPECT_GE(plan.placements[i - 1].span, plan.placements[i].span) << what << ": out of queue order at " << i;
}

TEST(Placement, EveryPlanPlacesEveryTokenOnceOnRanksOfTheMesh) {
  for (const Topology& t : {cluster(1, 4, 1), cluster(2, 4, 2), cluster(4, 8, 4), cluster(3, 6, 3)}) {
    for (const auto& lengths : mixes(t.world())) {
      const std::string what = std::to_string(t.nodes) + "x" + std::to_string(t.ranks_per_node) + ", " +
                               std::to_string(lengths.size()) + " sequences";
      const auto groups = ring_groups(t);
      for (const bool routing : {false, true})
        for (const bool remap : {false, true}) {
          const StepPlan plan = plan_zeppelin(lengths, t, model(), {routing, remap}, 32768);
          expect_valid(plan, lengths, t, what + " zeppelin");
          for (const Placement& p : plan.placements)
            if (p.ranks.size() > 1)
              EXPECT_NE(std::find(groups.begin(), groups.end(), p.ranks), groups.end()) << what << ": a ring outside ring_groups()";
        }
      expect_valid(plan_uniform(lengths, t, model(), t.world()), lengths, t, what + " uniform");
      expect_valid(plan_uniform(lengths, t, model(), t.ranks_per_node), lengths, t, what + " uniform per node");
      expect_valid(plan_token_balanced(lengths, t, model(), 32768), lengths, t, what + " token-balanced");
    }
  }
}

TEST(Placement, ShortSequencesStayWholeAndLongOnesAreSplitWithinTheirCapacity) {
  const Topology t = cluster(2, 8, 4);
  std::vector<int64_t> lengths(200, 300);
  lengths.push_back(1 << 18);
  const StepPlan plan = plan_zeppelin(lengths, t, model(), {}, 65536);
  for (const Placement& p : plan.placements) {
    if (lengths[p.sequence] == 300) EXPECT_EQ(p.span, Span::kLocal) << "a 300-token sequence was split";
    else EXPECT_GE(p.ranks.size(), 4u) << "262144 tokens over at most 65536 per rank need 4 ranks or more";
  }
}

TEST(Placement, EveryRankComputesTheSamePlan) {
  const Topology t = cluster(4, 8, 4);
  const auto lengths = mixes(t.world())[3];
  const StepPlan a = plan_zeppelin(lengths, t, model(), {true, true});
  const StepPlan b = plan_zeppelin(lengths, t, model(), {true, true});
  ASSERT_EQ(a.placements.size(), b.placements.size());
  for (size_t i = 0; i < a.placements.size(); ++i) {
    EXPECT_EQ(a.placements[i].sequence, b.placements[i].sequence);
    EXPECT_EQ(a.placements[i].ranks, b.placements[i].ranks);
  }
  EXPECT_EQ(a.step_s, b.step_s);
}

TEST(Placement, ZigzagChunksShareTheCausalWorkEvenly) {
  const int64_t length = 4096;
  for (const int g : {2, 4, 8}) {
    std::vector<double> pairs(g, 0);
    for (int i = 0; i < g; ++i)
      for (const auto& [begin, end] : zigzag_ranges(length, g, i))
        for (int64_t q = begin; q < end; ++q) pairs[i] += static_cast<double>(q + 1);  // keys a causal query sees
    const auto [lo, hi] = std::minmax_element(pairs.begin(), pairs.end());
    EXPECT_LT((*hi - *lo) / *hi, 1e-3) << "group of " << g;
  }
}

TEST(Placement, TheCostModelsCrossoverIsWhereARingStepStopsHidingItsTransfer) {
  const CostModel c = model();
  const double gbyte_s = 25;
  const double chunk = c.min_hiding_chunk(gbyte_s);
  const auto per_step = [&](double tokens_per_rank, bool block) {
    const int p = 4;
    const auto length = static_cast<int64_t>(tokens_per_rank * p);
    // Without latency, a ring of 4 is one block plus three of max(block, transfer).
    const double ring = c.ring_s(length, p, gbyte_s, 0.0);
    const double blk = c.attention_s(length) / (p * p);
    return block ? blk : (ring - blk) / (p - 1);
  };
  EXPECT_NEAR(per_step(2 * chunk, false), per_step(2 * chunk, true), 1e-3 * per_step(2 * chunk, true))
      << "above the crossover the step is its block";
  EXPECT_GT(per_step(chunk / 2, false), 1.5 * per_step(chunk / 2, true)) << "below it the transfer dominates";
  // With unbounded bandwidth a ring divides the attention by its size.
  EXPECT_NEAR(c.ring_s(1 << 16, 8, 1e12, 0.0), c.attention_s(1 << 16) / 8, 1e-9 * c.attention_s(1 << 16));
}

TEST(Placement, OnALongTailTheHierarchicalPlanBeatsUniformContextParallelism) {
  const Topology t = cluster(4, 8, 4);
  const auto lengths = mixes(t.world())[3];
  const double uniform = plan_uniform(lengths, t, model(), 2 * t.ranks_per_node).step_s;
  const double zeppelin = plan_zeppelin(lengths, t, model(), {true, true}, 65536).step_s;
  EXPECT_LT(zeppelin, uniform / 2) << "predicted step: zeppelin " << zeppelin << " s, uniform " << uniform << " s";
}

TEST(Placement, TopologyFilesLoadAndBadOnesSayWhatIsWrong) {
  for (const char* name : {"a800-4nic", "h800-8nic", "h200-8nic"}) {
    const Topology t = load_topology(std::string(LOOM_SOURCE_DIR) + "/configs/topology/" + name + ".yaml");
    EXPECT_EQ(t.ranks_per_node, 8) << name;
    EXPECT_EQ(t.ranks_per_node % t.nics_per_node, 0) << name;
  }
  const std::string path = testing::TempDir() + "/bad_topology.yaml";
  const auto error_of = [&](const std::string& text) {
    std::ofstream(path) << text;
    try {
      load_topology(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("nodes: 2\nnic_speed: 3\n").find("unknown key 'nic_speed'"), std::string::npos);
  EXPECT_NE(error_of("ranks_per_node: 8\nnics_per_node: 3\n").find("must divide ranks_per_node"), std::string::npos);
  EXPECT_NE(error_of("nodes: -1\n").find("nodes must be positive"), std::string::npos);
  EXPECT_NE(error_of("nodes: two\n").find("nodes must be a number"), std::string::npos);
}

TEST(Placement, TheRemapEvensTokensOutAndMovesTheFewestAcrossNodes) {
  std::mt19937_64 rng(3);
  for (const Topology& t : {cluster(1, 4, 1), cluster(2, 4, 2), cluster(4, 8, 4), cluster(3, 2, 1)}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<int64_t> tokens(t.world());
      for (auto& n : tokens) n = trial == 0 ? 0 : static_cast<int64_t>(rng() % (trial < 10 ? 50 : 5000));
      const RemapPlan plan = plan_remap(tokens, t);
      const int64_t total = std::accumulate(tokens.begin(), tokens.end(), int64_t{0});
      int64_t crossing = 0, node_surpluses = 0;
      std::vector<int64_t> node_surplus(t.nodes, 0);
      for (int i = 0; i < t.world(); ++i) {
        EXPECT_EQ(plan.after[i], total / t.world() + (i < total % t.world() ? 1 : 0));
        node_surplus[t.node_of(i)] += tokens[i] - plan.after[i];
        const auto send = plan.send_rows(i), recv = plan.recv_rows(i);
        EXPECT_EQ(std::accumulate(send.begin(), send.end(), int64_t{0}), tokens[i]) << "rank " << i << " sends what it has";
        EXPECT_EQ(std::accumulate(recv.begin(), recv.end(), int64_t{0}), plan.after[i]) << "rank " << i << " ends even";
        EXPECT_GE(send[i], 0);
        bool sends = false, receives = false;
        for (int j = 0; j < t.world(); ++j) {
          EXPECT_GE(plan.moves[i][j], 0);
          if (j == i) continue;
          sends |= plan.moves[i][j] > 0;
          receives |= plan.moves[j][i] > 0;
          if (t.node_of(i) != t.node_of(j)) crossing += plan.moves[i][j];
        }
        EXPECT_FALSE(sends && receives) << "rank " << i << " both sends and receives";
        EXPECT_EQ(plan.moves[i][i], 0);
      }
      for (const int64_t s : node_surplus) node_surpluses += std::max<int64_t>(s, 0);
      EXPECT_EQ(crossing, node_surpluses) << "more tokens cross nodes than the nodes' surpluses";
    }
  }
}

TEST(Placement, RingGroupsAreTheAlignedBlocksInsideNodesAndOfWholeNodes) {
  const auto groups = ring_groups(cluster(2, 8, 4));
  // Inside each node: 4 pairs, 2 quads, the node; across: both nodes.
  ASSERT_EQ(groups.size(), 2u * (4 + 2 + 1) + 1);
  EXPECT_EQ(groups.front(), (std::vector<int>{0, 1}));
  EXPECT_EQ(groups.back().size(), 16u);
  std::set<std::vector<int>> distinct(groups.begin(), groups.end());
  EXPECT_EQ(distinct.size(), groups.size());
  for (const auto& g : groups) {
    EXPECT_EQ(g.front() % static_cast<int>(std::min<size_t>(g.size(), 8)), 0) << "an unaligned block";
    EXPECT_EQ(g.back() - g.front() + 1, static_cast<int>(g.size())) << "a block with a gap";
  }
}

}  // namespace
}  // namespace loom
