// The trainer end to end: loss falls, resume is bit-exact, a crash while writing a checkpoint loses
// nothing, and bad input stops the run with a clear message.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "runtime/core/safetensors.h"
#include "runtime/data/copy_task.h"
#include "runtime/data/recall_task.h"
#include "runtime/data/token_dataset.h"
#include "runtime/train/step_placement.h"
#include "runtime/train/trainer.h"
#include "tests/test_util.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

using test::step_records;

std::string write_config(const test::ScratchDir& dir, const Config& c) {
  const std::string path = dir.path("config.yaml");
  std::ofstream(path) << to_yaml(c);
  return path;
}

double last_eval_accuracy(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  double accuracy = -1;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("kind", "") == "eval") accuracy = j["accuracy"].get<double>();
  }
  return accuracy;
}

// The demo's curriculum (configs/demo-copy.yaml, then configs/demo-short.yaml) at a quarter of its
// cost: d_model 64 and 1,024-token steps on one rank. Copying random strings first forms the
// induction head; recall then reaches retrieval. Chance is 10% (a value is one digit of ten); a model
// that only learns which values the document holds and which it has already been asked for reaches
// about 34% (1/8 + 1/7 + ... + 1/1, over 8), and recall trained from scratch stalls there (40-46%
// at 200-1,500 steps, docs/benchmarks/retrieval.md). This recipe measured 98.6% after 100 recall steps.
TEST(Training, RecallIsLearntAfterTheCopyWarmUp) {
  test::ScratchDir dir;
  write_dataset(dir.path("copy.h5"), make_copy_dataset({6000, 32, 96, 3}));
  write_dataset(dir.path("recall.h5"), make_recall_dataset({4000, 48, 96, 8, 1, 1, 3}));
  const std::string small = " --set model.d_model=64 --set parallel.sp=1 --set parallel.attention=auto"
                            " --set train.seq_len=1024 --set train.tokens_per_step=1024 --set log.progress=false";
  const std::string configs = std::string(LOOM_SOURCE_DIR) + "/configs/";
  const auto copy = test::run_loom("train --config " + configs + "demo-copy.yaml --set data.path=" + dir.path("copy.h5") +
                                   " --set run.dir=" + dir.path("copy") + small +
                                   " --set train.steps=800 --set eval.interval=800 --set checkpoint.interval=800");
  ASSERT_EQ(copy.exit_code, 0) << copy.output;
  const auto recall = test::run_loom("train --config " + configs + "demo-short.yaml --set data.path=" +
                                     dir.path("recall.h5") + " --set run.dir=" + dir.path("recall") +
                                     " --set run.init_from=" + dir.path("copy") + small +
                                     " --set train.steps=150 --set eval.interval=150 --set checkpoint.interval=150");
  ASSERT_EQ(recall.exit_code, 0) << recall.output;
  EXPECT_GT(last_eval_accuracy(dir.path("recall")), 0.9) << "chance is 0.10, the guessing plateau 0.34-0.46; "
                                                         << recall.output;
}

// With log.peak_tflops each step reports its MFU: the model FLOP/s over that peak; `loom summary`
// shows the median.
TEST(Training, StepsReportTheirModelFlopsUtilisationAgainstTheConfiguredPeak) {
  test::ScratchDir dir;
  Config c = test::tiny_config(test::write_tiny_passkey(dir), dir.path("run"));
  c.train.steps = 2;
  c.log.peak_tflops = 0.5;
  train(c);
  for (const auto& s : step_records(c.run.dir)) {
    ASSERT_TRUE(s.contains("mfu")) << s.dump();
    EXPECT_NEAR(s["mfu"].get<double>(), s["flops_per_s"].get<double>() / 0.5e12, 1e-12) << s.dump();
  }
  const auto summary = test::run_loom("summary " + c.run.dir);
  EXPECT_NE(summary.output.find("tokens/s (MFU "), std::string::npos) << summary.output;
  c.log.peak_tflops = 0;
  c.run.dir = dir.path("without");
  train(c);
  for (const auto& s : step_records(c.run.dir)) EXPECT_FALSE(s.contains("mfu")) << "no peak, no MFU: " << s.dump();
}

TEST(Training, LossFallsWellBelowItsStartIn30Steps) {
  test::ScratchDir dir;
  Config c = test::tiny_config(test::write_tiny_passkey(dir), dir.path("run"));
  c.train.steps = 30;
  c.train.dtype = "float32";
  c.model.d_model = 64;
  c.checkpoint.interval = 5;
  c.checkpoint.keep_last = 2;
  train(c);
  std::vector<std::string> kept;
  for (const auto& e : fs::directory_iterator(c.run.dir + "/checkpoints"))
    if (e.is_directory()) kept.push_back(e.path().filename().string());
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, (std::vector<std::string>{"step-25", "step-30"})) << "keep_last: 2 keeps the newest two";
  const auto steps = step_records(c.run.dir);
  ASSERT_EQ(steps.size(), 30u);
  const double first = steps.front()["loss"], last = steps.back()["loss"];
  EXPECT_NEAR(first, std::log(259.0), 0.5) << "an untrained byte model starts near uniform";
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
  for (const auto& s : steps) {
    EXPECT_GT(s["tokens"].get<int64_t>(), 0);
    EXPECT_GT(s["peak_mem_bytes"].get<int64_t>(), 0);
  }
}

// With either optimizer (train.optimizer: muon keeps Muon's momentum in the checkpoint too).
// The tokens stay in the file and are read a document at a time: a run on a dataset ten times
// larger peaks at the same memory (within 16 MB; reading the larger file whole would add 144 MB).
TEST(Training, PeakMemoryDoesNotGrowWithTheDataset) {
  test::ScratchDir dir;
  const auto peak_mb_on = [&](const std::string& name, int64_t docs) {
    {
      TokenDataset d;
      std::mt19937 rng(1);
      std::vector<int32_t> doc(1000);
      for (int64_t i = 0; i < docs; ++i) {
        for (auto& t : doc) t = static_cast<int32_t>(rng() % 256);
        d.add_document(doc);
      }
      write_dataset(dir.path(name + ".h5"), d);
    }
    Config c = test::tiny_config(dir.path(name + ".h5"), dir.path(name));
    c.train.steps = 3;
    const auto r = test::run_loom("train --config " + write_config(dir, c));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    int64_t peak = 0;
    for (const auto& record : step_records(c.run.dir)) peak = std::max(peak, record["peak_mem_bytes"].get<int64_t>());
    return static_cast<double>(peak) / (1 << 20);
  };
  const double small = peak_mb_on("small", 4000), large = peak_mb_on("large", 40000);  // 16 MB and 160 MB of tokens
  EXPECT_LT(std::abs(large - small), 16.0) << "peak RSS " << small << " MB on 4M tokens, " << large << " MB on 40M";
  std::printf("peak RSS: %.0f MB on a 16 MB dataset, %.0f MB on a 160 MB one\n", small, large);
}

TEST(Training, ResumeIsBitExact) {
  test::ScratchDir dir;
  const std::string data = test::write_tiny_passkey(dir);
  for (const std::string optimizer : {"adamw", "muon"}) {
    Config straight = test::tiny_config(data, dir.path(optimizer + "-straight"));
    straight.train.optimizer = optimizer;
    straight.checkpoint.interval = 3;
    train(straight);  // 6 steps, checkpoints at 3 and 6

    Config resumed = straight;
    resumed.run.dir = dir.path(optimizer + "-resumed");
    train(resumed, {straight.run.dir + "/checkpoints/step-3"});  // a fresh model, optimizer and loader

    const auto a = step_records(straight.run.dir), b = step_records(resumed.run.dir);
    ASSERT_EQ(b.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(b[i]["step"], a[i + 3]["step"]);
      EXPECT_EQ(b[i]["loss"].get<double>(), a[i + 3]["loss"].get<double>()) << optimizer << " step " << b[i]["step"];
    }
    EXPECT_LT(a.back()["loss"].get<double>(), a.front()["loss"].get<double>()) << optimizer;
    const SafetensorsFile wa(straight.run.dir + "/checkpoints/step-6/model.safetensors");
    const SafetensorsFile wb(resumed.run.dir + "/checkpoints/step-6/model.safetensors");
    for (const auto& name : wa.names()) EXPECT_TRUE(torch::equal(wa.load(name), wb.load(name))) << optimizer << " " << name;
  }
}

// bfloat16 parameters with float32 master weights (CPU): the loss follows float32 training to 2% at
// every step, the checkpoint holds the float32 masters, a resume is bit-exact, and a float32
// checkpoint resumes in bfloat16 and the other way round.
TEST(Training, Bfloat16WithFloat32MastersFollowsFloat32AndResumesAcrossPrecisions) {
  test::ScratchDir dir;
  Config f32 = test::tiny_config(test::write_tiny_passkey(dir), dir.path("f32"));
  f32.train.dtype = "float32";
  f32.train.steps = 8;
  f32.checkpoint.interval = 4;
  Config bf16 = f32;
  bf16.run.dir = dir.path("bf16");
  bf16.train.dtype = "bfloat16";
  train(f32);
  train(bf16);
  const auto a = step_records(f32.run.dir), b = step_records(bf16.run.dir);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double want = a[i]["loss"];
    EXPECT_NEAR(b[i]["loss"].get<double>(), want, 0.02 * want) << "step " << i + 1;
  }
  const SafetensorsFile weights(bf16.run.dir + "/checkpoints/step-8/model.safetensors");
  for (const auto& name : weights.names()) EXPECT_EQ(weights.info(name).dtype, torch::kFloat32) << name;

  Config resumed = bf16;
  resumed.run.dir = dir.path("bf16-resumed");
  train(resumed, {bf16.run.dir + "/checkpoints/step-4"});
  const auto c = step_records(resumed.run.dir);
  ASSERT_EQ(c.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(c[i]["loss"].get<double>(), b[i + 4]["loss"].get<double>()) << "step " << i + 5;

  for (const auto& [from, to] : {std::pair{f32, bf16}, std::pair{bf16, f32}}) {
    Config crossed = to;
    crossed.run.dir = dir.path(from.train.dtype + "-to-" + to.train.dtype);
    train(crossed, {from.run.dir + "/checkpoints/step-4"});
    const auto d = step_records(crossed.run.dir);
    ASSERT_EQ(d.size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
      const double want = a[i + 4]["loss"];
      EXPECT_NEAR(d[i]["loss"].get<double>(), want, 0.02 * want) << crossed.run.dir << " step " << i + 5;
    }
  }
}

// 20 float64 steps of SeCO (chunks of 100 tokens: 256-token sequences end in a partial chunk) give
// the losses and weights of full backprop.
TEST(Training, SecoTrainsLikeFullBackprop) {
  test::ScratchDir dir;
  Config full = test::tiny_config(test::write_tiny_passkey(dir), dir.path("full"));
  full.train.steps = 20;
  Config seco = full;
  seco.run.dir = dir.path("seco");
  seco.train.strategy = "seco";
  seco.train.chunk_size = 100;
  train(full);
  train(seco);
  const auto a = step_records(full.run.dir), b = step_records(seco.run.dir);
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (size_t i = 0; i < a.size(); ++i) {
    const double want = a[i]["loss"];
    EXPECT_NEAR(b[i]["loss"].get<double>(), want, 1e-10 * want) << "step " << i + 1;
  }
  const SafetensorsFile wa(full.run.dir + "/checkpoints/step-20/model.safetensors");
  const SafetensorsFile wb(seco.run.dir + "/checkpoints/step-20/model.safetensors");
  for (const auto& name : wa.names()) EXPECT_LE(test::relative_error(wb.load(name), wa.load(name)), 1e-10) << name;
}

// SpaCO's chunk draws are keyed by step and micro-batch, so a resumed run draws what the
// uninterrupted one drew.
TEST(Training, SpacoResumesBitExact) {
  test::ScratchDir dir;
  Config straight = test::tiny_config(test::write_tiny_passkey(dir), dir.path("straight"));
  straight.train.strategy = "spaco";
  straight.train.chunk_size = 32;
  straight.train.spaco.budget = 0.25;
  straight.checkpoint.interval = 3;
  train(straight);
  Config resumed = straight;
  resumed.run.dir = dir.path("resumed");
  train(resumed, {dir.path("straight/checkpoints/step-3")});
  const auto a = step_records(straight.run.dir), b = step_records(resumed.run.dir);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(b[i]["loss"].get<double>(), a[i + 3]["loss"].get<double>()) << "step " << i + 4;
  const SafetensorsFile wa(straight.run.dir + "/checkpoints/step-6/model.safetensors");
  const SafetensorsFile wb(resumed.run.dir + "/checkpoints/step-6/model.safetensors");
  for (const auto& name : wa.names()) EXPECT_TRUE(torch::equal(wa.load(name), wb.load(name))) << name;
}

TEST(Training, CrashWhileWritingACheckpointKeepsThePreviousOne) {
  test::ScratchDir dir;
  Config c = test::tiny_config(test::write_tiny_passkey(dir), dir.path("run"));
  c.checkpoint.interval = 2;
  const std::string config = write_config(dir, c);
  const auto crashed = test::run_loom("train --config " + config, "LOOM_FAULT=checkpoint-write@4");
  EXPECT_NE(crashed.exit_code, 0) << crashed.output;
  EXPECT_NE(crashed.output.find("aborting while writing the checkpoint"), std::string::npos) << crashed.output;
  const std::string ckpt = c.run.dir + "/checkpoints";
  EXPECT_TRUE(fs::exists(ckpt + "/step-2/model.safetensors"));
  EXPECT_FALSE(fs::exists(ckpt + "/step-4"));
  std::ifstream latest(ckpt + "/latest");
  std::string target;
  latest >> target;
  EXPECT_EQ(target, "step-2");
  EXPECT_NO_THROW(SafetensorsFile(ckpt + "/step-2/model.safetensors"));

  const auto resumed = test::run_loom("train --config " + config + " --resume auto");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos);
  EXPECT_TRUE(fs::exists(ckpt + "/step-6"));
  EXPECT_FALSE(fs::exists(ckpt + "/.tmp-step-4")) << "the half-written folder is cleaned up by the next save";
}

// Slurm preemption: SIGTERM makes the trainer save a checkpoint at the next step boundary and exit 0.
TEST(Training, PreemptionSignalSavesACheckpointAndExitsCleanly) {
  test::ScratchDir dir;
  Config c = test::tiny_config(test::write_tiny_passkey(dir), dir.path("run"));
  c.train.steps = 100000;
  const std::string config = write_config(dir, c);
  const std::string script = "sh -c '" + std::string(LOOM_BINARY) + " train --config " + config + " > " + dir.path("log") +
                             " 2>&1 & pid=$!; for i in $(seq 300); do [ -s " + c.run.dir +
                             "/metrics.jsonl ] && break; sleep 0.1; done; kill -TERM $pid; wait $pid; echo exit=$?'";
  FILE* pipe = popen(script.c_str(), "r");
  char buf[64] = {0};
  const std::string status = fgets(buf, sizeof buf, pipe) ? buf : "";
  pclose(pipe);
  EXPECT_EQ(status, "exit=0\n");
  std::ifstream log(dir.path("log"));
  const std::string output((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(output.find("received signal 15"), std::string::npos) << output;
  std::ifstream latest(c.run.dir + "/checkpoints/latest");
  std::string target;
  latest >> target;
  ASSERT_FALSE(target.empty()) << output;
  EXPECT_TRUE(fs::exists(c.run.dir + "/checkpoints/" + target + "/model.safetensors"));
  EXPECT_LT(step_records(c.run.dir).size(), 100000u);
}

// Each case: loom exits non-zero and says what is wrong.
class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = test::tiny_config(test::write_tiny_passkey(dir_), dir_.path("run"));
    config_.train.steps = 2;
    path_ = write_config(dir_, config_);
  }
  void expect_error(const std::string& args, const std::string& message) {
    const auto r = test::run_loom(args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << "expected '" << message << "' in:\n" << r.output;
  }
  test::ScratchDir dir_;
  Config config_;
  std::string path_;
};

TEST_F(BadInput, UnknownConfigKey) { expect_error("train --config " + path_ + " --set train.stpes=3", "unknown config key 'train.stpes'"); }

TEST_F(BadInput, MistypedCommandIsNamedWithTheNearestOne) {
  expect_error("trian --config " + path_, "'trian' is not a command of `loom`; did you mean 'train'?");
  expect_error("data synthh --out x.h5", "'synthh' is not a command of `loom data`; did you mean 'synth'?");
}

TEST_F(BadInput, MissingCheckpointSuggestsOnlyWhatEvalTakes) {
  const auto r = test::run_loom("eval --checkpoint " + dir_.path("nope"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("--resume"), std::string::npos) << "an option of train, not of eval: " << r.output;
}

TEST_F(BadInput, TopologyOfAnotherSizeThanTheJob) {
  expect_error("train --config " + path_ + " --set parallel.placement=zeppelin --set parallel.topology=" +
                   std::string(LOOM_SOURCE_DIR) + "/configs/topology/a800-4nic.yaml",
               "has 2 x 8 = 16 ranks, but the run's dp x sp group has 1");
}

TEST_F(BadInput, MissingDataFile) {
  expect_error("train --config " + path_ + " --set data.path=" + dir_.path("nope.h5"), "does not exist");
  EXPECT_FALSE(fs::exists(config_.run.dir)) << "a failed start leaves no run dir that would block the next one";
}

TEST_F(BadInput, CorruptDataFile) {
  fs::resize_file(config_.data.path, fs::file_size(config_.data.path) / 2);
  expect_error("train --config " + path_, "corrupt dataset");
}

TEST_F(BadInput, DatasetVocabLargerThanModel) {
  expect_error("train --config " + path_ + " --set model.vocab_size=200", "set model.vocab_size to at least 259");
}

TEST_F(BadInput, CheckpointOfAnotherModelShape) {
  ASSERT_EQ(test::run_loom("train --config " + path_).exit_code, 0);
  expect_error("train --config " + path_ + " --set model.d_model=48 --set run.dir=" + dir_.path("other") +
                   " --resume " + dir_.path("run/checkpoints/step-2"),
               "another model shape");
}

TEST_F(BadInput, ResumePathThatDoesNotExist) {
  expect_error("train --config " + path_ + " --resume " + dir_.path("no/such/step-9"), "does not exist");
}

TEST_F(BadInput, RunDirHoldingAnotherRunIsRefusedUnlessOverwrite) {
  ASSERT_EQ(test::run_loom("train --config " + path_).exit_code, 0);
  expect_error("train --config " + path_ + " --set train.lr=0.01", "already holds a run");
  EXPECT_TRUE(fs::exists(dir_.path("run/checkpoints/step-2"))) << "the refused run touched nothing";
  EXPECT_EQ(test::run_loom("train --config " + path_ + " --set run.overwrite=true").exit_code, 0);
}

TEST_F(BadInput, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  const auto r = test::run_loom("train --config " + path_ + " --set train.steps=4 --set checkpoint.interval=1",
                                "LOOM_FAULT=nan-loss@3");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("step 3: the loss or gradient is not finite"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checkpoints/step-2"), std::string::npos) << "names the last good checkpoint: " << r.output;
  EXPECT_TRUE(fs::exists(dir_.path("run/checkpoints/step-2/model.safetensors")));
  EXPECT_FALSE(fs::exists(dir_.path("run/checkpoints/step-3")));
}

TEST_F(BadInput, NonFiniteLossIsSkippedWhenConfigured) {
  const auto r = test::run_loom("train --config " + path_ + " --set train.steps=4 --set train.on_nan=skip", "LOOM_FAULT=nan-loss@2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto steps = step_records(dir_.path("run"));
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_TRUE(steps[1]["skipped"].get<bool>());
  EXPECT_FALSE(steps[2]["skipped"].get<bool>());
}

TEST_F(BadInput, OutputFoldersAreMadeAsNeeded) {
  const std::string out = dir_.path("new/sub/pk.h5");
  const auto r = test::run_loom("data synth --task passkey --docs 8 --min-len 200 --max-len 300 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(out));
}

TEST_F(BadInput, OutputPathThatCannotBeWrittenEndsTheCommandBeforeItsWork) {
  ASSERT_EQ(test::run_loom("train --config " + path_).exit_code, 0);
  std::ofstream(dir_.path("a-file")) << "not a folder";
  const auto r = test::run_loom("eval --checkpoint " + dir_.path("run") + " --json " + dir_.path("a-file/eval.json"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("loom: error: cannot make the folder"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("evaluating"), std::string::npos) << "the evaluation did not start: " << r.output;
}

// Before these checks --reps 0 crashed the benchmarks (a median of nothing) and --max-docs -1
// ended in an internal error.
TEST_F(BadInput, CommandLineValuesOutOfRangeAreRefusedBeforeAnyWork) {
  expect_error("bench attention --seq-len 1024 --reps 0", "--reps: must be positive, not 0");
  expect_error("bench lact --lengths 4096 -2", "--lengths: must be positive, not -2");
  expect_error("eval --checkpoint " + dir_.path("nowhere") + " --max-docs -1", "--max-docs: must be positive");
  expect_error("generate --checkpoint " + dir_.path("nowhere") + " --prompt x --max-new -3",
               "--max-new: must not be negative, not -3");
  expect_error("bench attention --reps three", "--reps: 'three' is not a number");
}

TEST_F(BadInput, AnUnknownOptionIsAnErrorLikeAnyOther) {
  expect_error("train --config " + path_ + " --stpes 3", "loom: error: The following arguments were not expected: 3 --stpes");
}

TEST_F(BadInput, EvalOfAPasskeyCheckpointReportsAccuracyByDepth) {
  ASSERT_EQ(test::run_loom("train --config " + path_).exit_code, 0);
  const auto r = test::run_loom("eval --checkpoint " + dir_.path("run") + " --json " + dir_.path("eval.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("by depth of the evidence"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("by distance from the evidence"), std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(std::ifstream(dir_.path("eval.json")));
  EXPECT_GT(j["answered"].get<int64_t>(), 0);
  EXPECT_TRUE(std::isfinite(j["loss"].get<double>()));
  EXPECT_EQ(j["accuracy_by_depth"].size() > 0, true);
}

// `loom summary --plot` draws a PNG of the run (where gnuplot is installed, as setup-deps does).
TEST_F(BadInput, SummaryPlotsTheRunAsAPng) {
  ASSERT_EQ(test::run_loom("train --config " + path_ + " --set eval.interval=1").exit_code, 0);
  const auto r = test::run_loom("summary " + dir_.path("run") + " --plot " + dir_.path("run.png"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream png(dir_.path("run.png"), std::ios::binary);
  std::string head(8, '\0');
  png.read(head.data(), 8);
  EXPECT_EQ(head, std::string("\x89PNG\r\n\x1a\n", 8)) << r.output;
  EXPECT_GT(fs::file_size(dir_.path("run.png")), 10000u) << "three panels drawn, not an empty image";
}

// A placement cuts a packed sequence into its documents: each real token once, in order, with its
// position and label, padding dropped, each document on its own (id 0).
TEST(StepPlacement, DocumentsOfAPackedSequenceAreItsDocumentsInOrder) {
  const auto ints = [](std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64); };
  const PackedTensors packed{ints({5, 6, 7, 8, 9, 0, 0}), ints({0, 1, 2, 0, 1, 0, 0}), ints({0, 0, 0, 1, 1, -1, -1}),
                             ints({6, 7, -1, 9, -1, -1, -1}), 3};
  const std::vector<PackedTensors> docs = documents_of(packed);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_TRUE(torch::equal(docs[0].tokens, ints({5, 6, 7})));
  EXPECT_TRUE(torch::equal(docs[1].tokens, ints({8, 9})));
  EXPECT_TRUE(torch::equal(docs[1].positions, ints({0, 1})));
  EXPECT_TRUE(torch::equal(docs[0].labels, ints({6, 7, -1})));
  EXPECT_TRUE(torch::equal(docs[1].doc_ids, ints({0, 0})));
  EXPECT_EQ(docs[0].label_count, 2);
  EXPECT_EQ(docs[1].label_count, 1);
}

}  // namespace
}  // namespace loom
