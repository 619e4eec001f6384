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

std::vector<torch::Tensor> parameters_of(const Llama& model) { return model->parameters(); }

void print_start(const Config& config, const Llama& model, const TokenDataset& data, size_t train_docs, size_t val_docs) {
  std::printf("loom train: %s parameters | %s dense FLOPs/token (fwd) | %ld layers, d_model %ld, %ld/%ld heads | %s\n",
              human_count(static_cast<double>(model->num_parameters())).c_str(),
              human_count(model->dense_flops_per_token()).c_str(), config.model.n_layers, config.model.d_model,
              config.model.n_heads, config.model.n_kv_heads, config.train.dtype.c_str());
  std::printf("data: %s | %ld documents (%zu train, %zu validation) | %s tokens | step: %ld tokens = %ld x %ld\n",
              config.data.path.c_str(), data.num_docs(), train_docs, val_docs,
              human_count(static_cast<double>(data.tokens.size())).c_str(), config.train.tokens_per_step,
              config.accumulation_steps(), config.train.seq_len);
  std::printf("run dir: %s\n", config.run.dir.c_str());
  std::fflush(stdout);
}

}  // namespace

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float64") return torch::kFloat64;
  if (name == "bfloat16") return torch::kBFloat16;
  return torch::kFloat32;
}

TrainSummary train(const Config& config, const TrainOptions& options) {
  prepare_run_dir(config, options);
  if (config.train.threads > 0) torch::set_num_threads(static_cast<int>(config.train.threads));
  const TokenDataset data = load_training_data(config);

  torch::manual_seed(config.run.seed);
  Llama model(config.model);
  model->to(parse_dtype(config.train.dtype));
  if (!config.run.init_from.empty()) load_weights(resolve_checkpoint(config.run.init_from, config.run.dir), model);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : model->named_parameters()) named.emplace_back(item.key(), item.value());
  AdamW optimizer(named, {config.train.beta1, config.train.beta2, config.train.eps, config.train.weight_decay});
  const LrSchedule schedule{config.train.lr, config.train.min_lr_ratio, config.train.warmup_steps, config.train.steps};

  const auto train_docs = split_documents(data, Split::kTrain, config.data.val_fraction);
  const auto val_docs = split_documents(data, Split::kValidation, config.data.val_fraction);
  BatchLoader loader(data, train_docs, config.train.seq_len, config.data.loss_on, static_cast<uint64_t>(config.run.seed));

  TrainSummary summary;
  int64_t start = 0;
  const std::string resume_from = options.resume.empty() ? "" : resolve_checkpoint(options.resume, config.run.dir);
  if (!resume_from.empty()) {
    const CheckpointMeta meta = read_checkpoint_meta(resume_from);
    load_weights(resume_from, model);
    load_optimizer(resume_from, optimizer);
    loader.set_cursor(meta.cursor);
    start = meta.step;
    summary.checkpoint = resume_from;
    std::printf("resumed from %s (step %ld)\n", resume_from.c_str(), start);
  }
  print_start(config, model, data, train_docs.size(), val_docs.size());

  MetricsLog log(config.run.dir, start, config.train.steps, config.log.progress);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  const auto params = parameters_of(model);

  for (int64_t step = start; step < config.train.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<PackedTensors> micro;
    int64_t labels = 0;
    for (int64_t a = 0; a < config.accumulation_steps(); ++a) {
      micro.push_back(to_tensors(loader.next()));
      labels += micro.back().label_count;
    }
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    double loss_sum = 0, flops = 0;
    int64_t tokens = 0;
    for (const auto& mb : micro) {
      const auto loss = summed_loss(model->forward(mb.tokens, mb.positions, mb.doc_ids), mb.labels);
      (loss / static_cast<double>(std::max<int64_t>(1, labels))).backward();
      loss_sum += fault_requested("nan-loss", step + 1) ? NAN : loss.item<double>();
      flops += training_flops(model, mb);
      tokens += (mb.doc_ids >= 0).sum().item<int64_t>();
    }
    StepMetrics m;
    m.step = step + 1;
    m.loss = loss_sum / static_cast<double>(std::max<int64_t>(1, labels));
    m.lr = schedule.at(step);
    m.grad_norm = clip_grad_norm(params, config.train.grad_clip);
    m.skipped = !std::isfinite(m.loss) || !std::isfinite(m.grad_norm);
    if (m.skipped && config.train.on_nan == "stop") {
      log.finish_line();
      fail("step " + std::to_string(step + 1) + ": the loss or gradient is not finite (loss " + std::to_string(m.loss) +
           "). The last good checkpoint is " + (summary.checkpoint.empty() ? "none" : summary.checkpoint) +
           "; lower train.lr, or set train.on_nan=skip to skip such steps");
    }
    if (!m.skipped) optimizer.step(m.lr);
    m.step_time_s = seconds_since(t0);
    m.tokens = tokens;
    m.tokens_per_s = static_cast<double>(tokens) / m.step_time_s;
    m.flops_per_s = flops / m.step_time_s;
    m.peak_mem_bytes = peak_rss_bytes();
    log.step(m, m.step % config.log.interval == 0 || m.step == config.train.steps);
    summary.last_loss = m.loss;
    summary.steps_done = m.step;

    if (config.eval.interval > 0 && m.step % config.eval.interval == 0 && !val_docs.empty()) {
      auto result = evaluate(model, data, val_docs, config.train.seq_len, config.eval.max_docs);
      auto record = result.to_json();
      record["step"] = m.step;
      record["kind"] = "eval";
      log.record(record);
    }
    const bool stop = g_stop_signal != 0;
    const bool interval_hit = config.checkpoint.interval > 0 && m.step % config.checkpoint.interval == 0;
    if (interval_hit || stop || m.step == config.train.steps) {
      summary.checkpoint = save_checkpoint(config.run.dir, m.step, model, optimizer, loader.cursor(), config);
      prune_checkpoints(config.run.dir, config.checkpoint.keep_last);
    }
    if (stop) {
      log.finish_line();
      std::printf("received signal %d: saved %s and stopping; continue with --resume auto\n", static_cast<int>(g_stop_signal),
                  summary.checkpoint.c_str());
      summary.preempted = true;
      return summary;
    }
  }
  log.finish_line();
  return summary;
}

}  // namespace loom
