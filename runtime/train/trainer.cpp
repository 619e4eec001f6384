#include "runtime/train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "optim/adamw.h"
#include "optim/lr_schedule.h"
#include "runtime/core/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/data/batch_loader.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/evaluation.h"
#include "runtime/train/metrics_log.h"
#include "runtime/train/packed_tensors.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

// A run dir belongs to one run: starting a fresh run over an existing one would mix two runs'
// checkpoints and metrics, so it needs --resume or an explicit run.overwrite.
void prepare_run_dir(const Config& config, const TrainOptions& options) {
  const fs::path dir(config.run.dir);
  const bool holds_run = fs::exists(dir / "config.resolved.yaml") || fs::exists(dir / "checkpoints");
  if (holds_run && options.resume.empty()) {
    check(config.run.overwrite, "run dir '" + config.run.dir +
                                    "' already holds a run. Continue it with --resume auto, replace it with "
                                    "--set run.overwrite=true, or choose another run.dir");
    fs::remove_all(dir / "checkpoints");
    fs::remove(dir / "metrics.jsonl");
  }
  fs::create_directories(dir);
  std::ofstream(dir / "config.resolved.yaml") << to_yaml(config);
}

TokenDataset load_training_data(const Config& config) {
  check(!config.data.path.empty(), "data.path is not set: point it at an HDF5 dataset (make one with `loom data synth` or `loom data prepare`)");
  TokenDataset data = read_dataset(config.data.path);
  check(data.vocab_size <= config.model.vocab_size,
        "dataset '" + config.data.path + "' has vocab size " + std::to_string(data.vocab_size) + " but model.vocab_size is " +
            std::to_string(config.model.vocab_size) + "; set model.vocab_size to at least " + std::to_string(data.vocab_size));
  return data;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One training run: the model, its optimizer, the data and where the run stands.
class Run {
 public:
  Run(const Config& config, const TokenDataset& data)
      : config_(config),
        data_(data),
        model_(build_model(config)),
        optimizer_(model_->parameter_list(), {config.train.beta1, config.train.beta2, config.train.eps, config.train.weight_decay}),
        schedule_{config.train.lr, config.train.min_lr_ratio, config.train.warmup_steps, config.train.steps},
        train_docs_(split_documents(data, Split::kTrain, config.data.val_fraction)),
        val_docs_(split_documents(data, Split::kValidation, config.data.val_fraction)),
        loader_(data, train_docs_, config.train.seq_len, config.data.loss_on, static_cast<uint64_t>(config.run.seed)) {}

  // Continues from `dir`; returns its step.
  int64_t resume(const std::string& dir) {
    const CheckpointMeta meta = read_checkpoint_meta(dir);
    load_weights(dir, model_);
    load_optimizer(dir, optimizer_);
    loader_.set_cursor(meta.cursor);
    last_checkpoint_ = dir;
    std::printf("resumed from %s (step %ld)\n", dir.c_str(), meta.step);
    return meta.step;
  }

  void print_start() const {
    const auto& c = config_;
    std::printf("loom train: %s parameters | %s dense FLOPs/token (fwd) | %ld layers, d_model %ld, %ld/%ld heads | %s\n",
                human_count(static_cast<double>(model_->num_parameters())).c_str(),
                human_count(model_->dense_flops_per_token()).c_str(), c.model.n_layers, c.model.d_model,
                c.model.n_heads, c.model.n_kv_heads, c.train.dtype.c_str());
    std::printf("data: %s | %ld documents (%zu train, %zu validation) | %s tokens | step: %ld tokens = %ld x %ld\n",
                c.data.path.c_str(), data_.num_docs(), train_docs_.size(), val_docs_.size(),
                human_count(static_cast<double>(data_.tokens.size())).c_str(), c.train.tokens_per_step,
                c.accumulation_steps(), c.train.seq_len);
    std::printf("run dir: %s\n", c.run.dir.c_str());
    std::fflush(stdout);
  }

  // One optimizer step over tokens_per_step tokens; `step` counts from 0.
  StepMetrics step(int64_t step, MetricsLog& log) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<PackedTensors> micro;
    int64_t labels = 0;
    for (int64_t a = 0; a < config_.accumulation_steps(); ++a) {
      micro.push_back(to_tensors(loader_.next()));
      labels += micro.back().label_count;
    }
    // The loss is averaged over every label token of the step, not per micro-batch, so that
    // accumulation gives the update of one big batch.
    const double denominator = static_cast<double>(std::max<int64_t>(1, labels));
    const auto params = model_->parameters();
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    StepMetrics m;
    m.step = step + 1;
    double flops = 0;
    for (const auto& mb : micro) {
      const auto loss = summed_loss(model_->forward(mb.tokens, mb.positions, mb.doc_ids), mb.labels);
      (loss / denominator).backward();
      m.loss += (fault_requested("nan-loss", m.step) ? NAN : loss.item<double>()) / denominator;
      flops += training_flops(model_, mb);
      m.tokens += (mb.doc_ids >= 0).sum().item<int64_t>();
    }
    m.lr = schedule_.at(step);
    m.grad_norm = clip_grad_norm(params, config_.train.grad_clip);
    m.skipped = !std::isfinite(m.loss) || !std::isfinite(m.grad_norm);
    if (m.skipped && config_.train.on_nan == "stop") {
      log.finish_line();
      fail("step " + std::to_string(m.step) + ": the loss or gradient is not finite (loss " + std::to_string(m.loss) +
           "). The last good checkpoint is " + (last_checkpoint_.empty() ? "none" : last_checkpoint_) +
           "; lower train.lr, or set train.on_nan=skip to skip such steps");
    }
    if (!m.skipped) optimizer_.step(m.lr);
    m.step_time_s = seconds_since(t0);
    m.tokens_per_s = static_cast<double>(m.tokens) / m.step_time_s;
    m.flops_per_s = flops / m.step_time_s;
    m.peak_mem_bytes = peak_rss_bytes();
    return m;
  }

  void evaluate_now(int64_t step, MetricsLog& log) {
    if (val_docs_.empty()) return;
    const EvalResult result = evaluate(model_, data_, val_docs_, config_.train.seq_len, config_.eval.max_docs);
    auto record = result.to_json();
    record["step"] = step;
    record["kind"] = "eval";
    log.record(record);
    log.finish_line();
    std::printf("eval at step %ld: loss %.4f, perplexity %.3f", step, result.loss, result.perplexity);
    if (result.has_answers) std::printf(", passkey retrieval %ld/%ld", result.correct, result.answered);
    std::printf("\n");
  }

  const std::string& checkpoint(int64_t step) {
    last_checkpoint_ = save_checkpoint(config_.run.dir, step, model_, optimizer_, loader_.cursor(), config_);
    prune_checkpoints(config_.run.dir, config_.checkpoint.keep_last);
    return last_checkpoint_;
  }

  const std::string& last_checkpoint() const { return last_checkpoint_; }

 private:
  static Llama build_model(const Config& config) {
    torch::manual_seed(config.run.seed);
    Llama model(config.model);
    model->to(parse_dtype(config.train.dtype));
    if (!config.run.init_from.empty()) load_weights(resolve_checkpoint(config.run.init_from, config.run.dir), model);
    return model;
  }


  const Config& config_;
  const TokenDataset& data_;
  Llama model_;
  AdamW optimizer_;
  LrSchedule schedule_;
  std::vector<int64_t> train_docs_, val_docs_;
  BatchLoader loader_;
  std::string last_checkpoint_;
};

}  // namespace

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float64") return torch::kFloat64;
  if (name == "bfloat16") return torch::kBFloat16;
  return torch::kFloat32;
}

TrainSummary train(const Config& config, const TrainOptions& options) {
  // The data is checked before the run dir is touched, so a bad data path leaves nothing behind.
  const TokenDataset data = load_training_data(config);
  prepare_run_dir(config, options);
  if (config.train.threads > 0) torch::set_num_threads(static_cast<int>(config.train.threads));
  Run run(config, data);
  const std::string resume_from = options.resume.empty() ? "" : resolve_checkpoint(options.resume, config.run.dir);
  const int64_t start = resume_from.empty() ? 0 : run.resume(resume_from);
  run.print_start();

  MetricsLog log(config.run.dir, start, config.train.steps, config.log.progress);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  TrainSummary summary;
  for (int64_t step = start; step < config.train.steps; ++step) {
    const StepMetrics m = run.step(step, log);
    log.step(m, m.step % config.log.interval == 0 || m.step == config.train.steps);
    summary.last_loss = m.loss;
    summary.steps_done = m.step;
    if (config.eval.interval > 0 && m.step % config.eval.interval == 0) run.evaluate_now(m.step, log);
    const bool stop = g_stop_signal != 0;
    if (stop || m.step == config.train.steps || (config.checkpoint.interval > 0 && m.step % config.checkpoint.interval == 0))
      run.checkpoint(m.step);
    if (stop) {
      log.finish_line();
      std::printf("received signal %d: saved %s and stopping; continue with --resume auto\n", static_cast<int>(g_stop_signal),
                  run.last_checkpoint().c_str());
      summary.preempted = true;
      break;
    }
  }
  log.finish_line();
  summary.checkpoint = run.last_checkpoint();
  return summary;
}

}  // namespace loom
