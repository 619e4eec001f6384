// Data-parallel training through the real launcher on real MPI ranks: dp = k gives the parameters
// of one process on the same global batch, a checkpoint resumes on another dp, and failures end
// the whole job quickly with a message that names the rank.
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <tuple>

#include "optim/training_optimizer.h"
#include "parallel/placement/topology.h"
#include "runtime/core/safetensors.h"
#include "runtime/core/text_file.h"
#include "runtime/train/checkpoint.h"
#include "runtime/data/passkey_task.h"
#include "runtime/data/token_dataset.h"
#include "runtime/train/metrics_log.h"
#include "tests/test_util.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

class DataParallel : public ::testing::Test {
 protected:
  void SetUp() override {
    Config c = test::tiny_config(test::write_tiny_passkey(dir_), dir_.path("run"));
    c.train.tokens_per_step = 4 * c.train.seq_len;  // 4 micro-batches: dp 1, 2 and 4 all divide them
    c.train.steps = 3;
    std::ofstream(dir_.path("config.yaml")) << to_yaml(c);
  }

  std::string train_args(const std::string& run, const std::string& extra = "") const {
    return "train --config " + dir_.path("config.yaml") + " --set run.dir=" + dir_.path(run) + " " + extra;
  }

  std::map<std::string, torch::Tensor> weights(const std::string& checkpoint) const {
    const CheckpointTensors stored = checkpoint_tensors(read_checkpoint_meta(dir_.path(checkpoint)), "model");
    std::map<std::string, torch::Tensor> out;
    for (const auto& name : stored.names()) out[name] = stored.load(name);
    return out;
  }

  void expect_same_weights(const std::string& a, const std::string& b) const {
    const auto wa = weights(a), wb = weights(b);
    ASSERT_EQ(wa.size(), wb.size());
    double worst = 0;
    for (const auto& [name, t] : wa) worst = std::max(worst, test::relative_error(t, wb.at(name)));
    EXPECT_LE(worst, 1e-10) << a << " vs " << b;
    std::printf("largest relative difference of %s and %s: %.3g\n", a.c_str(), b.c_str(), worst);
  }

  test::ScratchDir dir_;
};

TEST_F(DataParallel, TwoAndFourRanksMatchOneProcessOnTheSameGlobalBatch) {
  ASSERT_EQ(test::run_loom(train_args("one")).exit_code, 0);
  for (int ranks : {2, 4}) {
    const auto r = test::run_loom_ranks(ranks, train_args("dp" + std::to_string(ranks)));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("mesh: dp " + std::to_string(ranks) + " x sp 1 x tp 1"), std::string::npos) << r.output;
    expect_same_weights("one/checkpoints/step-3", "dp" + std::to_string(ranks) + "/checkpoints/step-3");
  }
}
// SeCO on two data-parallel ranks: gradients are reduced once, after each rank's reverse sweep.
TEST_F(DataParallel, SecoOnTwoRanksMatchesFullBackpropInOneProcess) {
  ASSERT_EQ(test::run_loom(train_args("one")).exit_code, 0);
  const auto r = test::run_loom_ranks(2, train_args("seco-dp2", "--set train.strategy=seco --set train.chunk_size=96"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("backprop: seco, chunks of 96 tokens (3 per sequence)"), std::string::npos) << r.output;
  expect_same_weights("one/checkpoints/step-3", "seco-dp2/checkpoints/step-3");
}

// SeCO over sequence-parallel ranks: each chunk cut over sp = 2, its K/V all-gathered; alone and
// as dp 2 x sp 2.
TEST_F(DataParallel, SecoOnSequenceParallelRanksMatchesFullBackpropInOneProcess) {
  ASSERT_EQ(test::run_loom(train_args("one")).exit_code, 0);
  for (const int ranks : {2, 4}) {
    const std::string run = "seco-sp2-of-" + std::to_string(ranks);
    const auto r = test::run_loom_ranks(
        ranks, train_args(run, "--set train.strategy=seco --set train.chunk_size=96 --set parallel.sp=2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("backprop: seco, chunks of 96 tokens (3 per sequence), each cut over the 2 sp ranks"),
              std::string::npos)
        << r.output;
    expect_same_weights("one/checkpoints/step-3", run + "/checkpoints/step-3");
  }
}

std::vector<double> losses(const std::string& run_dir) {
  std::vector<double> out;
  for (const auto& record : test::step_records(run_dir)) out.push_back(record["loss"].get<double>());
  return out;
}

// Sequence parallelism end to end: 5 steps with sp = 2, 3, 4 (ring and token_ring) and dp = 2 x
// sp = 2 give the losses and parameters of one process.
TEST_F(DataParallel, SequenceParallelTrainingMatchesOneProcess) {
  const std::string steps = "--set train.steps=5";
  ASSERT_EQ(test::run_loom(train_args("one5", steps)).exit_code, 0);
  const auto reference = losses(dir_.path("one5"));
  ASSERT_EQ(reference.size(), 5u);
  struct Layout { int ranks; int64_t sp; const char* attention; };
  for (const Layout l : {Layout{2, 2, "ring"}, Layout{3, 3, "ring"}, Layout{4, 4, "ring"}, Layout{2, 2, "token_ring"},
                         Layout{3, 3, "token_ring"}, Layout{4, 4, "token_ring"}, Layout{4, 2, "token_ring"}}) {
    const std::string run = std::string(l.attention) + "-sp" + std::to_string(l.sp) + "-of-" + std::to_string(l.ranks);
    const auto r = test::run_loom_ranks(l.ranks, train_args(run, steps + " --set parallel.sp=" + std::to_string(l.sp) +
                                                                     " --set parallel.attention=" + l.attention));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("attention: " + std::string(l.attention)), std::string::npos) << r.output;
    const auto got = losses(dir_.path(run));
    ASSERT_EQ(got.size(), reference.size()) << run;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], reference[i], 1e-10 * std::abs(reference[i])) << run << " step " << i + 1;
    expect_same_weights("one5/checkpoints/step-5", run + "/checkpoints/step-5");
  }
}

// Activation checkpointing on sequence-parallel ranks: fully recomputed layers run their ring
// exchanges again in the backward, and the result is still one process's; so is selective's.
TEST_F(DataParallel, ActivationCheckpointingOnTwoSequenceParallelRanksMatchesOneProcess) {
  ASSERT_EQ(test::run_loom(train_args("one")).exit_code, 0);
  for (const std::string mode : {"full", "selective"}) {
    const auto r = test::run_loom_ranks(2, train_args("sp2-" + mode, "--set parallel.sp=2 --set parallel.attention=token_ring "
                                                                     "--set train.activation_checkpoint=" + mode));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_same_weights("one/checkpoints/step-3", "sp2-" + mode + "/checkpoints/step-3");
  }
}

// Tensor parallelism end to end (3 float64 steps): tp = 2 and 4, dp 2 x tp 2 and sp 2 x tp 2 give
// the parameters of one process, gathered whole into the checkpoint; so do tp = 2 and dp 2 x tp 2
// with every sequence split in two interleaved halves (TokenWeave), SeCO at tp 2 and sp 2 x tp 2, and
// Muon (each split matrix gathered whole over tp to be orthogonalised) at tp 2 and dp 2 x tp 2.
TEST_F(DataParallel, TensorParallelTrainingMatchesOneProcess) {
  ASSERT_EQ(test::run_loom(train_args("one")).exit_code, 0);
  const std::string four_kv = " --set model.n_kv_heads=4";  // tp = 4 divides the KV heads
  ASSERT_EQ(test::run_loom(train_args("one-kv4", four_kv)).exit_code, 0);
  const std::string muon = " --set train.optimizer=muon";
  ASSERT_EQ(test::run_loom(train_args("one-muon", muon)).exit_code, 0);
  struct Layout { const char* run; int ranks; std::string sets; const char* reference; };
  for (const Layout& l : {Layout{"tp2", 2, "--set parallel.tp=2", "one"},
                          Layout{"tp4", 4, "--set parallel.tp=4" + four_kv, "one-kv4"},
                          Layout{"dp2-tp2", 4, "--set parallel.tp=2 --set parallel.dp=2", "one"},
                          Layout{"sp2-tp2", 4, "--set parallel.tp=2 --set parallel.sp=2 --set parallel.attention=token_ring", "one"},
                          Layout{"tp2-weave", 2, "--set parallel.tp=2 --set parallel.token_weave=on", "one"},
                          Layout{"dp2-tp2-weave", 4, "--set parallel.tp=2 --set parallel.dp=2 --set parallel.token_weave=on", "one"},
                          Layout{"tp2-seco", 2, "--set parallel.tp=2 --set train.strategy=seco --set train.chunk_size=96", "one"},
                          Layout{"sp2-tp2-seco", 4, "--set parallel.tp=2 --set parallel.sp=2 --set train.strategy=seco "
                                                    "--set train.chunk_size=96", "one"},
                          Layout{"tp2-muon", 2, "--set parallel.tp=2" + muon, "one-muon"},
                          Layout{"dp2-tp2-muon", 4, "--set parallel.tp=2 --set parallel.dp=2" + muon, "one-muon"}}) {
    const std::string run = l.run;
    const auto r = test::run_loom_ranks(l.ranks, train_args(run, l.sets));
    ASSERT_EQ(r.exit_code, 0) << l.sets << "\n" << r.output;
    const bool weave = l.sets.find("token_weave=on") != std::string::npos;
    EXPECT_EQ(r.output.find("token splitting:") != std::string::npos, weave) << r.output;
    expect_same_weights(std::string(l.reference) + "/checkpoints/step-3", run + "/checkpoints/step-3");
  }
}

// Zeppelin's placement end to end (3 float64 steps): every document of the step whole on one rank or
// split over a ring of the dp x sp ranks, with no rank holding more than seq_len / sp of one, gives
// the losses and parameters of one process at 2, 3 and 4 ranks, on 4 ranks as two nodes of 2, with
// one micro-batch a step, which leaves ranks with nothing to compute, with SeCO (a split
// document's chunks cut over its ring), with LaCT layers (halo attention and fast-weight sums over
// the ring), with tensor parallelism (each placed rank a tp group of 2) and with ZeRO stage 2 (whose
// ranks run different numbers of backwards, so the fewer add empty reduction rounds).
TEST_F(DataParallel, ZeppelinPlacementTrainsAsOneProcess) {
  const std::string mix = "--set train.seq_len=512 --set train.tokens_per_step=2048";
  const std::string single = "--set train.seq_len=512 --set train.tokens_per_step=512";
  const std::string zeppelin = " --set parallel.placement=zeppelin";
  // Documents of 120 to 512 tokens: on two ranks (at most 256 of one each) the short ones are packed
  // two to a rank's sequence; on two nodes of 2 (at most 128 each) documents go whole, to a ring
  // inside a node and to a ring across both (loom plan shows it).
  const std::string wide = mix + " --set data.path=" + dir_.path("wide.h5");
  write_dataset(dir_.path("wide.h5"), make_passkey_dataset({64, 120, 1000, 7}));
  const std::string nodes = dir_.path("two-nodes.yaml");
  std::ofstream(nodes) << "name: two nodes of 2\nnodes: 2\nranks_per_node: 2\nnics_per_node: 1\n";
  const std::string two_nodes = wide + zeppelin + " --set parallel.sp=4 --set parallel.topology=" + nodes;
  const std::string lact =
      " --set model.lact.every=2 --set model.lact.chunk=40 --set model.lact.window=24 --set model.lact.heads=2 "
      "--set model.lact.base_lr=0.1 --set model.lact.lowrank=4";
  for (const auto& [run, sets] :
       {std::pair{"one-mix", mix}, {"one-single", single}, {"one-wide", wide}, {"one-wide-lact", wide + lact}})
    ASSERT_EQ(test::run_loom(train_args(run, sets)).exit_code, 0) << run;
  const auto plan = test::run_loom("plan --config " + dir_.path("config.yaml") + " --step 2 " + two_nodes);
  for (const char* span : {" local ", " intra-node ", " inter-node "})
    EXPECT_NE(plan.output.find(span), std::string::npos) << span << "\n" << plan.output;
  struct Layout { const char* run; int ranks; std::string sets; const char* reference; int tp = 1; };
  for (const Layout& l : {Layout{"z2-ring", 2, wide + zeppelin + " --set parallel.sp=2 --set parallel.attention=ring", "one-wide"},
                          Layout{"z3-token-ring", 3, mix + zeppelin + " --set parallel.sp=3 --set parallel.attention=token_ring", "one-mix"},
                          Layout{"z4", 4, mix + zeppelin + " --set parallel.sp=2", "one-mix"},
                          Layout{"z4-two-nodes", 4, two_nodes, "one-wide"},
                          Layout{"z4-single", 4, single + zeppelin + " --set parallel.sp=2", "one-single"},
                          Layout{"z4-seco", 4, two_nodes + " --set train.strategy=seco --set train.chunk_size=64", "one-wide"},
                          Layout{"z4-lact", 4, two_nodes + lact, "one-wide-lact"},
                          Layout{"z4-tp2", 4, wide + zeppelin + " --set parallel.sp=2 --set parallel.tp=2", "one-wide", 2},
                          Layout{"z4-zero2", 4, two_nodes + " --set parallel.zero=2", "one-wide"}}) {
    const auto r = test::run_loom_ranks(l.ranks, train_args(l.run, l.sets));
    ASSERT_EQ(r.exit_code, 0) << l.sets << "\n" << r.output;
    EXPECT_NE(r.output.find("placement: zeppelin over the " + std::to_string(l.ranks / l.tp) + " dp x sp ranks"), std::string::npos)
        << r.output;
    int64_t split = 0;
    for (const auto& record : test::step_records(dir_.path(l.run))) split += record.at("split_sequences").get<int64_t>();
    EXPECT_GT(split, 0) << l.run << ": no document was split over a ring, so the rings went untested";
    const auto got = losses(dir_.path(l.run)), want = losses(dir_.path(l.reference));
    ASSERT_EQ(got.size(), want.size()) << l.run;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-10 * std::abs(want[i])) << l.run << " step " << i + 1;
    expect_same_weights(std::string(l.reference) + "/checkpoints/step-3", std::string(l.run) + "/checkpoints/step-3");
  }
}

// The benchmark of placed training steps runs both placements on the same ranks and prints both
// rows with their predictions (its figures are in docs/benchmarks/placement.md, not checked here).
TEST_F(DataParallel, PlacementBenchmarkMeasuresBothPlacementsOnTheSameRanks) {
  const auto r = test::run_loom_ranks(2, "bench placement --train --config " + dir_.path("config.yaml") +
                                             " --set parallel.sp=2 --steps 1 --warmups 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* row : {"\nuniform ", "\nzeppelin "}) EXPECT_NE(r.output.find(row), std::string::npos) << row << r.output;
  EXPECT_NE(r.output.find("matmul ceiling"), std::string::npos) << r.output;
}

// Calibration on two ranks of one node: a topology file that loads, with the node and its ranks, the
// intra-node link measured and both rates positive; it plans a step. A length beyond the model's is
// refused.
TEST_F(DataParallel, CalibrationWritesATopologyThePlannerReads) {
  // Long enough for attention's L² to show beside the linear layers of so small a model.
  const std::string out = dir_.path("calibrated.yaml"), config = " --config " + dir_.path("config.yaml");
  const auto r = test::run_loom_ranks(2, "bench calibrate" + config + " --set model.max_seq_len=2048 --lengths 512 1024 2048"
                                         " --out " + out + " --bytes 1048576 --reps 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Topology t = load_topology(out);
  EXPECT_EQ(t.nodes, 1);
  EXPECT_EQ(t.ranks_per_node, 2);
  EXPECT_GT(t.intra_gbyte_s, 0);
  EXPECT_NE(t.intra_gbyte_s, Topology{}.intra_gbyte_s) << "measured, not the default";
  EXPECT_GT(t.rank_flops_per_s, 0);
  EXPECT_GT(t.attention_flops_per_s, 0);
  EXPECT_NE(r.output.find("a = "), std::string::npos) << r.output;
  const auto plan = test::run_loom("plan" + config + " --set parallel.sp=2 --topology " + out);
  EXPECT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_NE(plan.output.find("calibrated on"), std::string::npos) << plan.output;
  const auto beyond = test::run_loom_ranks(2, "bench calibrate" + config + " --out " + out + " --lengths 128 4096");
  EXPECT_NE(beyond.exit_code, 0);
  EXPECT_NE(beyond.output.find("length 4096 is outside [1, model.max_seq_len]"), std::string::npos) << beyond.output;
}

// Checkpoints hold whole tensors whatever the tp degree: a tp = 2 checkpoint resumes on one rank and
// a one-rank checkpoint on tp = 2, both continuing as the uninterrupted run does.
TEST_F(DataParallel, ACheckpointMovesBetweenTensorParallelDegrees) {
  const std::string five = "--set train.steps=5 --set checkpoint.interval=2";
  ASSERT_EQ(test::run_loom(train_args("straight", five)).exit_code, 0);
  ASSERT_EQ(test::run_loom_ranks(2, train_args("tp2", five + " --set parallel.tp=2")).exit_code, 0);
  const auto down = test::run_loom(train_args("tp2-to-1", five + " --resume " + dir_.path("tp2") + "/checkpoints/step-2"));
  ASSERT_EQ(down.exit_code, 0) << down.output;
  const auto up = test::run_loom_ranks(2, train_args("1-to-tp2", five + " --set parallel.tp=2 --resume " + dir_.path("straight") +
                                                                  "/checkpoints/step-2"));
  ASSERT_EQ(up.exit_code, 0) << up.output;
  const auto straight = losses(dir_.path("straight"));
  for (const char* run : {"tp2-to-1", "1-to-tp2"}) {
    const auto got = losses(dir_.path(run));
    ASSERT_EQ(got.size(), 3u) << run;
    for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(got[i], straight[i + 2], 1e-10 * straight[i + 2]) << run << " step " << i + 3;
    expect_same_weights("straight/checkpoints/step-5", std::string(run) + "/checkpoints/step-5");
  }
}

// LaCT's context parallelism end to end: window attention over the ranks (halo exchange) and
// fast-weight updates summed over them (chunks of 40 tokens cut across the zigzag shards, documents
// of 150-400 tokens packed into 256-token sequences), with a full-attention layer between, equal
// one process; also with every update recomputed in the backward (model.lact.checkpoint), whose
// all-reduces then run again there. Muon inside the updates runs one step only: its Newton-Schulz
// iterations multiply rounding differences so much that one process on 1 and on 2 threads already
// differs by 1.4e-10 after 3 steps (8e-12 after 1), while without it sp = 2 matches to 2e-14.
TEST_F(DataParallel, LactContextParallelTrainingMatchesOneProcess) {
  const std::string lact =
      "--set model.lact.every=2 --set model.lact.chunk=40 --set model.lact.window=24 --set model.lact.heads=2 "
      "--set model.lact.base_lr=0.1 --set model.lact.lowrank=4";
  struct Layout { int ranks; int64_t sp; const char* attention; std::string extra; };
  const std::string muon = " --set model.lact.muon=true --set train.steps=1";
  const std::vector<std::pair<std::string, std::vector<Layout>>> runs = {
      {"", {{2, 2, "ring", ""}, {4, 4, "token_ring", ""}, {4, 2, "token_ring", ""},
            {2, 2, "token_ring", " --set model.lact.checkpoint=true"}}},
      {muon, {{2, 2, "token_ring", ""}}}};
  for (const auto& [variant, layouts] : runs) {
    const std::string one = variant.empty() ? "lact-one" : "lact-muon-one";
    ASSERT_EQ(test::run_loom(train_args(one, lact + variant)).exit_code, 0);
    const auto reference = losses(dir_.path(one));
    const std::string last = "/checkpoints/step-" + std::to_string(reference.size());
    for (const Layout& l : layouts) {
      const std::string run = one + "-" + l.attention + "-sp" + std::to_string(l.sp) + "-of-" + std::to_string(l.ranks) +
                              (l.extra.empty() ? "" : "-recompute");
      const auto r = test::run_loom_ranks(l.ranks, train_args(run, lact + variant + l.extra + " --set parallel.sp=" +
                                                                       std::to_string(l.sp) + " --set parallel.attention=" + l.attention));
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const auto got = losses(dir_.path(run));
      ASSERT_EQ(got.size(), reference.size()) << run;
      for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], reference[i], 1e-10 * std::abs(reference[i])) << run << " step " << i + 1;
      expect_same_weights(one + last, run + last);
    }
  }
}

// One checkpoint of a dp = 2 run continues on 1 and on 4 ranks to the same parameters: the data
// cursor is global and the optimizer state replicated.
TEST_F(DataParallel, ACheckpointOfTwoRanksResumesOnOneAndOnFour) {
  const auto two = test::run_loom_ranks(2, train_args("dp2", "--set train.steps=4 --set checkpoint.interval=2"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  for (int ranks : {1, 4}) {
    const std::string run = "resumed-on-" + std::to_string(ranks);
    fs::create_directories(dir_.path(run) + "/checkpoints");
    fs::copy(dir_.path("dp2/checkpoints/step-2"), dir_.path(run) + "/checkpoints/step-2", fs::copy_options::recursive);
    const auto r = test::run_loom_ranks(ranks, train_args(run, "--set train.steps=4 --resume " + dir_.path(run) + "/checkpoints/step-2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
    expect_same_weights("dp2/checkpoints/step-4", run + "/checkpoints/step-4");
  }
}

// ZeRO end to end (5 float64 steps): stages 1 and 2 at dp 2, 3 and 4, at dp 2 x sp 2, at dp 2 x tp 2
// and with SeCO at dp 2 give the losses and parameters of one process, each of n ranks holds 1/n of
// the master weights and moments (with tp, 1/dp of its slices' and 1/n of the norms'), and at stage
// 2 1/n of the reduced gradients. SpaCO at stage 2, whose ranks sweep different numbers of chunks,
// trains as SpaCO replicated.
TEST_F(DataParallel, ZeroShardsTheOptimizerAndTrainsAsOneProcess) {
  const std::string steps = "--set train.steps=5", three = " --set train.tokens_per_step=768";  // 3 micro-batches
  ASSERT_EQ(test::run_loom(train_args("one5", steps)).exit_code, 0);
  ASSERT_EQ(test::run_loom(train_args("one5-three", steps + three)).exit_code, 0);
  // AdamW's two float64 moments; float64 parameters are their own masters.
  const double whole_mb = 2.0 * 8 * static_cast<double>(Llama(test::tiny_config("", "").model)->num_parameters()) / 1e6;
  struct Layout { int ranks; int stage; std::string sets; const char* reference; const char* name = ""; int tp = 1; };
  for (const Layout& l : {Layout{2, 1, "", "one5"}, Layout{2, 2, "", "one5"}, Layout{3, 2, three, "one5-three"},
                          Layout{4, 1, "", "one5"}, Layout{4, 2, "", "one5"},
                          Layout{4, 2, " --set parallel.sp=2 --set parallel.attention=token_ring", "one5", "-sp2"},
                          Layout{4, 1, " --set parallel.tp=2", "one5", "-tp2", 2}, Layout{4, 2, " --set parallel.tp=2", "one5", "-tp2", 2},
                          Layout{2, 2, " --set train.strategy=seco --set train.chunk_size=64", "one5", "-seco"}}) {
    const std::string run = "zero" + std::to_string(l.stage) + "-" + std::to_string(l.ranks) + l.name;
    const auto r = test::run_loom_ranks(l.ranks, train_args(run, steps + l.sets + " --set parallel.zero=" + std::to_string(l.stage)));
    ASSERT_EQ(r.exit_code, 0) << run << "\n" << r.output;
    const std::string says = "ZeRO stage " + std::to_string(l.stage) + " over " + std::to_string(l.ranks / l.tp) + " replicas: this rank holds ";
    const auto at = r.output.find(says);
    ASSERT_NE(at, std::string::npos) << r.output;
    const double held_mb = std::stod(r.output.substr(at + says.size()));
    EXPECT_NEAR(held_mb, whole_mb / l.ranks, 0.01 * whole_mb / l.ranks) << run << ": rank 0 holds " << held_mb << " MB of " << whole_mb;
    // Reduced gradients kept between backwards (float64, half the moments' bytes): whole buffers (of
    // this rank's slices) at stage 1, this rank's parts at stage 2.
    const std::string keeps = "and keeps ";
    const double grads_mb = std::stod(r.output.substr(r.output.find(keeps, at) + keeps.size()));
    const double want_grads_mb = whole_mb / 2 / (l.stage == 2 ? l.ranks : l.tp);
    EXPECT_NEAR(grads_mb, want_grads_mb, 0.01 * want_grads_mb) << run << ": rank 0 keeps " << grads_mb << " MB of gradients";
    const auto got = losses(dir_.path(run)), want = losses(dir_.path(l.reference));
    ASSERT_EQ(got.size(), want.size()) << run;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-10 * std::abs(want[i])) << run << " step " << i + 1;
    expect_same_weights(std::string(l.reference) + "/checkpoints/step-5", run + "/checkpoints/step-5");
  }
  // Stage 2 at dp 2 against the same training replicated at dp 2.
  const auto as_replicated = [&](const std::string& name, const std::string& sets, double rtol) {
    ASSERT_EQ(test::run_loom_ranks(2, train_args(name + "-dp2", steps + sets)).exit_code, 0) << name;
    const auto r = test::run_loom_ranks(2, train_args(name + "-zero2", steps + sets + " --set parallel.zero=2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto got = losses(dir_.path(name + "-zero2")), want = losses(dir_.path(name + "-dp2"));
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], rtol * std::abs(want[i])) << name << " step " << i + 1;
  };
  as_replicated("spaco", " --set train.strategy=spaco --set train.chunk_size=32 --set train.spaco.budget=0.5", 1e-10);
  // bfloat16 parameters with float32 masters kept apart, one part per rank.
  as_replicated("bf16", " --set train.dtype=bfloat16", 1e-6);
}

// Muon under ZeRO shards by whole parameters: at stages 1 and 2, dp 2 and 3, it trains as one
// process, each rank keeping about 1/n of the optimizer state (off by at most the largest
// parameter's state) and at stage 2 about 1/n of the gradients besides its parts of the sums; a
// stage 1 and a stage 2 checkpoint resume on one process without ZeRO.
TEST_F(DataParallel, MuonUnderZeroShardsByWholeParameters) {
  const std::string muon = "--set train.optimizer=muon --set train.steps=4 --set checkpoint.interval=2";
  const std::string three = " --set train.tokens_per_step=768";  // 3 micro-batches
  ASSERT_EQ(test::run_loom(train_args("muon-one", muon)).exit_code, 0);
  ASSERT_EQ(test::run_loom(train_args("muon-one-three", muon + three)).exit_code, 0);
  // float64 state: Muon's momentum for the layers' matrices, AdamW's two moments for the rest.
  double whole = 0, largest = 0;
  for (const auto& [name, p] : Llama(test::tiny_config("", "").model)->parameter_list()) {
    const double bytes = 8.0 * static_cast<double>(p.numel()) * (is_muon_parameter(name, p) ? 1 : 2);
    whole += bytes / 1e6;
    largest = std::max(largest, bytes / 1e6);
  }
  // Every parameter's gradient in float64, whole.
  const double gradients = 8.0 * static_cast<double>(Llama(test::tiny_config("", "").model)->num_parameters()) / 1e6;
  for (const auto& [ranks, stage, sets, reference] :
       {std::tuple<int, int, std::string, std::string>{2, 1, "", "muon-one"}, {3, 1, three, "muon-one-three"},
        {2, 2, "", "muon-one"}, {3, 2, three, "muon-one-three"}}) {
    const std::string run = "muon-zero" + std::to_string(stage) + "-dp" + std::to_string(ranks);
    const auto r = test::run_loom_ranks(ranks, train_args(run, muon + sets + " --set parallel.zero=" + std::to_string(stage)));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string says = "ZeRO stage " + std::to_string(stage) + " by whole parameters over " + std::to_string(ranks) +
                             " replicas: this rank holds ";
    const auto at = r.output.find(says);
    ASSERT_NE(at, std::string::npos) << r.output;
    const double held = std::stod(r.output.substr(at + says.size()));
    EXPECT_NEAR(held, whole / ranks, largest) << run << ": rank 0 holds " << held << " MB of " << whole;
    EXPECT_LT(held, whole / ranks + largest);
    // Said at the start: the reducer's whole buffers at stage 1, only its parts at stage 2 (where the
    // owned parameters' gradients, about as much again, arrive with each step).
    const std::string keeps = "and keeps ";
    const double kept = std::stod(r.output.substr(r.output.find(keeps, at) + keeps.size()));
    const double want_kept = stage == 1 ? gradients : gradients / ranks;
    EXPECT_NEAR(kept, want_kept, 0.01 * want_kept) << run;
    const auto got = losses(dir_.path(run)), want = losses(dir_.path(reference));
    ASSERT_EQ(got.size(), want.size()) << run;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-10 * std::abs(want[i])) << run << " step " << i + 1;
    expect_same_weights(reference + "/checkpoints/step-4", run + "/checkpoints/step-4");
  }
  for (const std::string saved : {"muon-zero1-dp2", "muon-zero2-dp2"}) {
    const auto resumed = test::run_loom(train_args(saved + "-resumed", muon + " --resume " + dir_.path(saved + "/checkpoints/step-2")));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    const auto got = losses(dir_.path(saved + "-resumed")), want = losses(dir_.path("muon-one"));
    ASSERT_EQ(got.size(), 2u);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], want[i + 2], 1e-10 * std::abs(want[i + 2])) << saved << " resumed, step " << i + 3;
  }
}

// A checkpoint written under ZeRO holds whole tensors: saved at dp 4 with stage 2, it resumes at dp 2
// with stage 1, on one process without ZeRO, on dp 2 x sp 2, on tp 2 and on dp 2 x tp 2 with stage
// 2; saved at dp 2 x tp 2 with stage 2 (parts of column-split matrices written row by row), on one
// process. Each continues as the uninterrupted run does, optimizer state included.
TEST_F(DataParallel, AZeroCheckpointResumesOnAnyLayoutAndStage) {
  const std::string four = "--set train.steps=4 --set checkpoint.interval=2";
  const auto saved = test::run_loom_ranks(4, train_args("zero2-dp4", four + " --set parallel.zero=2"));
  ASSERT_EQ(saved.exit_code, 0) << saved.output;
  ASSERT_EQ(test::run_loom(train_args("one4", four)).exit_code, 0);
  // Every rank wrote its own part of the moments, a quarter of them, and nothing whole.
  const std::string step2 = dir_.path("zero2-dp4/checkpoints/step-2");
  EXPECT_FALSE(fs::exists(step2 + "/optimizer.safetensors"));
  std::vector<double> moment_bytes;
  for (int r = 0; r < 4; ++r) {
    const SafetensorsFile file(step2 + "/" + checkpoint_file_name("optimizer", r, 4));
    double bytes = 0;
    for (const auto& name : file.names())
      if (name.find(".exp_avg") != std::string::npos) bytes += static_cast<double>(file.info(name).end - file.info(name).begin);
    moment_bytes.push_back(bytes);
  }
  const double whole = std::accumulate(moment_bytes.begin(), moment_bytes.end(), 0.0);
  EXPECT_NEAR(whole, 2.0 * 8 * static_cast<double>(Llama(test::tiny_config("", "").model)->num_parameters()), 1.0);
  for (int r = 0; r < 4; ++r) EXPECT_NEAR(moment_bytes[r], whole / 4, 0.01 * whole / 4) << "rank " << r;
  const auto tp_saved = test::run_loom_ranks(4, train_args("zero2-dp2-tp2", four + " --set parallel.zero=2 --set parallel.tp=2"));
  ASSERT_EQ(tp_saved.exit_code, 0) << tp_saved.output;
  struct Layout { const char* run; int ranks; const char* sets; const char* from = "zero2-dp4"; };
  for (const Layout& l : {Layout{"as-dp2-zero1", 2, " --set parallel.zero=1"}, Layout{"as-one", 1, ""},
                          Layout{"as-sp2-zero2", 4, " --set parallel.sp=2 --set parallel.zero=2"},
                          Layout{"as-tp2", 2, " --set parallel.tp=2"},
                          Layout{"as-dp2-tp2-zero2", 4, " --set parallel.tp=2 --set parallel.zero=2"},
                          Layout{"tp-zero-as-one", 1, "", "zero2-dp2-tp2"}}) {
    fs::create_directories(dir_.path(l.run) + "/checkpoints");
    fs::copy(dir_.path(std::string(l.from) + "/checkpoints/step-2"), dir_.path(l.run) + "/checkpoints/step-2",
             fs::copy_options::recursive);
    const auto r = test::run_loom_ranks(l.ranks, train_args(l.run, four + l.sets + " --resume " + dir_.path(l.run) + "/checkpoints/step-2"));
    ASSERT_EQ(r.exit_code, 0) << l.run << "\n" << r.output;
    EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
    const auto got = losses(dir_.path(l.run)), want = losses(dir_.path("one4"));
    ASSERT_EQ(got.size(), 2u) << l.run;  // the resumed steps 3 and 4
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i + 2], 1e-10 * std::abs(want[i + 2])) << l.run;
    expect_same_weights("one4/checkpoints/step-4", std::string(l.run) + "/checkpoints/step-4");
  }
}

// A rank that crashes half-way through writing its share of a checkpoint leaves the previous
// checkpoint whole and `latest` pointing at it; the run resumes from it with the losses of a run
// that never crashed.
TEST_F(DataParallel, ACrashDuringAShardedSaveKeepsThePreviousCheckpoint) {
  const std::string four = "--set train.steps=4 --set checkpoint.interval=2 --set parallel.zero=2";
  ASSERT_EQ(test::run_loom_ranks(2, train_args("straight", four)).exit_code, 0);
  const auto crashed = test::run_loom_ranks(2, train_args("crashed", four), "LOOM_FAULT=checkpoint-write@4:1");
  EXPECT_NE(crashed.exit_code, 0) << crashed.output;
  EXPECT_NE(crashed.output.find("aborting while writing the checkpoint"), std::string::npos) << crashed.output;
  EXPECT_FALSE(fs::exists(dir_.path("crashed/checkpoints/step-4")));
  EXPECT_EQ(read_text_file(dir_.path("crashed/checkpoints/latest")), "step-2\n");
  const auto resumed = test::run_loom_ranks(2, train_args("crashed", four + " --resume auto"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("step-2 (step 2)"), std::string::npos) << resumed.output;
  const auto got = losses(dir_.path("crashed")), want = losses(dir_.path("straight"));
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i]) << "step " << i + 1;
  expect_same_weights("straight/checkpoints/step-4", "crashed/checkpoints/step-4");
}

class Failures : public DataParallel {
 protected:
  // Runs 2 ranks with a fault on rank 1 and a short collective time-out.
  test::ProcessResult run_with_fault(const std::string& fault) const {
    return test::run_loom_ranks(2, train_args("faulty", "--set train.steps=50 --set parallel.timeout_s=5"), "LOOM_FAULT=" + fault);
  }
};

TEST_F(Failures, ARankThatThrowsEndsTheJobNamingTheRank) {
  const auto r = run_with_fault("throw@2:1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.seconds, 30) << r.output;
  EXPECT_NE(r.output.find("error on rank 1 of 2: injected failure (LOOM_FAULT) at step 2"), std::string::npos) << r.output;
}

TEST_F(Failures, ARankKilledWithSigkillDoesNotLeaveTheOthersWaiting) {
  const auto r = run_with_fault("kill@2:1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.seconds, 30) << r.output;
  EXPECT_NE(r.output.find("signal 9"), std::string::npos) << r.output;
}

// A rank that stops answering: the others' next collective times out and names itself.
TEST_F(Failures, AHungRankTimesOutTheOthersNamingTheOperation) {
  const auto r = run_with_fault("hang@2:1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.seconds, 30) << r.output;
  EXPECT_NE(r.output.find("error on rank 0 of 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did not finish within 5 s"), std::string::npos) << r.output;
}

// A preemption notice that reaches only rank 1: both ranks agree at the step boundary, save the
// same checkpoint and exit 0, and the run continues from it.
TEST_F(Failures, APreemptionSignalOnOneRankCheckpointsAndExitsCleanly) {
  const auto r = run_with_fault("signal@3:1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("another rank received a stop signal"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir_.path("faulty/checkpoints/step-3/state.json"))) << r.output;
  const auto resumed = test::run_loom_ranks(2, train_args("faulty", "--set train.steps=5 --resume auto"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("step-3 (step 3)"), std::string::npos) << resumed.output;
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// The dry run needs no ranks: it checks the config for a world size and shows the mesh.
TEST(DryRun, ShowsTheMeshAndMemoryAndNamesWhatCannotWork) {
  test::ScratchDir dir;
  const std::string config = dir.path("c.yaml");
  std::ofstream(config) << to_yaml(test::tiny_config("unused.h5", dir.path("run")));
  const auto ok = test::run_loom("train --dry-run --world 2 --config " + config);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  for (const char* expected : {"mesh dp 2 x sp 1 x tp 1", "rank 1: dp 1 sp 0 tp 0", "model.layers.{0..1}.self_attn.k_proj.weight",
                               "memory per rank (estimate)", "valid for 2 ranks"})
    EXPECT_NE(ok.output.find(expected), std::string::npos) << expected << "\n" << ok.output;
  EXPECT_FALSE(fs::exists(dir.path("run"))) << "a dry run writes nothing";

  const auto uneven = test::run_loom("train --dry-run --world 3 --config " + config);
  EXPECT_EQ(uneven.exit_code, 1);
  EXPECT_NE(uneven.output.find("do not split evenly over dp = 3"), std::string::npos) << uneven.output;
  const auto heads = test::run_loom("train --dry-run --world 8 --set parallel.tp=8 --config " + config);
  EXPECT_NE(heads.output.find("parallel.tp = 8 must divide model.n_heads = 4"), std::string::npos) << heads.output;
  const auto sp = test::run_loom("train --dry-run --world 4 --set parallel.sp=2 --config " + config);
  EXPECT_EQ(sp.exit_code, 0) << sp.output;
  EXPECT_NE(sp.output.find("mesh dp 2 x sp 2 x tp 1"), std::string::npos) << sp.output;
  EXPECT_NE(sp.output.find("attention: ring (auto: "), std::string::npos) << sp.output;  // GQA 4:2 in float64
  // ZeRO: half the AdamW moments (2 x 8 bytes per parameter in float64) on each of 2 replicas.
  const auto zero = test::run_loom("train --dry-run --world 2 --set parallel.zero=2 --config " + config);
  EXPECT_EQ(zero.exit_code, 0) << zero.output;
  const std::string moments =
      "adamw moments " + human_count(16.0 * static_cast<double>(Llama(test::tiny_config("", "").model)->num_parameters()) / 2) + "B";
  for (const std::string expected : {std::string("memory per rank (estimate, ZeRO stage 2 over 2)"), moments})
    EXPECT_NE(zero.output.find(expected), std::string::npos) << expected << "\n" << zero.output;
  // The table of every stage and backprop: the chosen one's total in its cell, every stage shown;
  // combinations the config refuses would be "-" (with tensor parallelism below, none is).
  const auto row = [](const std::string& out, const std::string& start) {
    const auto at = out.find("\n" + start);
    return at == std::string::npos ? std::string() : out.substr(at + 1, out.find('\n', at + 1) - at - 1);
  };
  const std::string chosen = zero.output.substr(zero.output.find(" = ", zero.output.find("memory per rank (estimate, ZeRO")) + 3);
  EXPECT_NE(row(zero.output, "    zero 2").find(chosen.substr(0, chosen.find('\n'))), std::string::npos) << zero.output;
  for (const char* stage : {"    zero 0", "    zero 1"}) EXPECT_EQ(row(zero.output, stage).find(" - "), std::string::npos) << zero.output;
  const std::string zeppelin = "train --dry-run --world 4 --set parallel.sp=2 --set parallel.placement=zeppelin --config " + config;
  const auto placed = test::run_loom(zeppelin);
  EXPECT_EQ(placed.exit_code, 0) << placed.output;
  EXPECT_NE(placed.output.find("placement: zeppelin over the 4 dp x sp ranks of one node (1 x 4)"), std::string::npos)
      << placed.output;
  const auto other = test::run_loom(zeppelin + " --set parallel.topology=" + std::string(LOOM_SOURCE_DIR) +
                                    "/configs/topology/h200-8nic.yaml");
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.output.find("has 2 x 8 = 16 ranks, but the run's dp x sp group has 4"), std::string::npos) << other.output;
  // Tensor parallelism: rank 0's slices (q_proj [4 heads x 8, 32] -> [16, 32]; a 259-row vocabulary
  // -> 130 rows), and what it does not combine with yet named.
  const auto tp = test::run_loom("train --dry-run --world 4 --set parallel.tp=2 --config " + config);
  EXPECT_EQ(tp.exit_code, 0) << tp.output;
  const auto line_of = [&](const std::string& name) {
    const auto at = tp.output.find(name);
    return at == std::string::npos ? std::string() : tp.output.substr(at, tp.output.find('\n', at) - at);
  };
  EXPECT_NE(line_of("self_attn.q_proj.weight").find("[16, 32]"), std::string::npos) << tp.output;
  EXPECT_NE(line_of("model.embed_tokens.weight").find("[130, 32]"), std::string::npos) << tp.output;
  for (const char* expected : {"mesh dp 2 x sp 1 x tp 2", "on each tp rank", "valid for 4 ranks"})
    EXPECT_NE(tp.output.find(expected), std::string::npos) << expected << "\n" << tp.output;
  for (const char* stage : {"    zero 1", "    zero 2"}) EXPECT_EQ(row(tp.output, stage).find(" - "), std::string::npos) << tp.output;
  const auto tp_muon = test::run_loom("train --dry-run --world 4 --set parallel.tp=2 --set parallel.zero=1 "
                                      "--set train.optimizer=muon --config " + config);
  EXPECT_EQ(tp_muon.exit_code, 1);
  EXPECT_NE(tp_muon.output.find("ZeRO deals Muon's whole matrices to the replicas"), std::string::npos) << tp_muon.output;

  // LaCT layers between attention layers: one layer of each kind stands for its kind, and the
  // parameter count is the whole model's.
  const auto lact = test::run_loom("train --dry-run --world 1 --set model.n_layers=4 --set model.lact.every=2 "
                                   "--set model.lact.heads=2 --set train.optimizer=muon --config " + config);
  EXPECT_EQ(lact.exit_code, 0) << lact.output;
  ModelConfig m = test::tiny_config("unused.h5", dir.path("run")).model;
  m.n_layers = 4;
  m.lact.every = 2;
  m.lact.heads = 2;
  const std::string count = "parameters: " + human_count(static_cast<double>(Llama(m)->num_parameters())) + " ";
  for (const std::string expected : {std::string("model.layers.{LaCT}.lact.qkv.weight"),
                                     std::string("model.layers.{attention}.self_attn.q_proj.weight"), count,
                                     std::string("muon moments")})
    EXPECT_NE(lact.output.find(expected), std::string::npos) << expected << "\n" << lact.output;
}

// loom plan on a real dataset and config: every sequence of the step placed once, the predicted
// steps printed, and a topology whose ranks disagree with the config refused.
TEST(Plan, PlacesEverySequenceOfTheStepOnceAndPredictsItsTime) {
  test::ScratchDir dir;
  const std::string config = dir.path("c.yaml");
  std::ofstream(config) << to_yaml(test::tiny_config(test::write_tiny_passkey(dir), dir.path("run")));
  const auto r = test::run_loom("plan --config " + config + " --set parallel.sp=2 --set parallel.dp=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto at = r.output.find("loom plan: step 0 of ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const size_t sequences = std::stoul(r.output.substr(r.output.find(", ", at) + 2));
  std::istringstream lines(r.output);
  std::set<long> seen;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream row(line);
    long sequence = 0, tokens = 0;
    std::string span, ranks;
    if (!(row >> sequence >> tokens >> span >> ranks)) continue;
    EXPECT_TRUE(seen.insert(sequence).second) << "sequence " << sequence << " placed twice\n" << r.output;
    EXPECT_TRUE(span == "local" || span == "intra-node") << line;  // one node of dp x sp = 4 ranks
  }
  EXPECT_GT(sequences, 0u) << r.output;
  EXPECT_EQ(seen.size(), sequences) << r.output;
  EXPECT_NE(r.output.find("predicted step (the cost model's, not a measurement): zeppelin "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("uniform context parallelism over groups of 2 ranks"), std::string::npos) << r.output;

  const auto bad = test::run_loom("plan --config " + config + " --set parallel.dp=2 --topology " + std::string(LOOM_SOURCE_DIR) +
                                  "/configs/topology/a800-4nic.yaml");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("parallel.dp = 2"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace loom
