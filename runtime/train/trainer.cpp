#include "runtime/train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "optim/adamw.h"
#include "optim/training_optimizer.h"
#include "optim/chunkwise/chunkwise_backprop.h"
#include "optim/lr_schedule.h"
#include "parallel/attention/attention_backend.h"
#include "parallel/comm/differentiable_all_reduce.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/gradient_reducer.h"
#include "parallel/mesh.h"
#include "runtime/core/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/core/text_file.h"
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
  write_text_file((dir / "config.resolved.yaml").string(), to_yaml(config));
}

TokenDataset load_training_data(const Config& config) {
  check(!config.data.path.empty(), "data.path is not set: point it at an HDF5 dataset (make one with `loom data synth` or `loom data prepare`)");
  TokenDataset data = read_dataset(config.data.path);
  check(data.vocab_size <= config.model.vocab_size,
        "dataset '" + config.data.path + "' has vocab size " + std::to_string(data.vocab_size) + " but model.vocab_size is " +
            std::to_string(config.model.vocab_size) + "; set model.vocab_size to at least " + std::to_string(data.vocab_size));
  return data;
}

std::string describe_strategy(const TrainConfig& t) {
  if (t.strategy == "full") return "full sequence";
  std::string text = t.strategy + ", chunks of " + std::to_string(t.chunk_size) + " tokens (" +
                     std::to_string(chunk_count(t.seq_len, t.chunk_size)) + " per sequence)";
  if (t.strategy == "spaco") {
    char budget[32];
    std::snprintf(budget, sizeof budget, "%g", t.spaco.budget);
    text += ", " + t.spaco.sampling + " sampling of " + budget + " of them";
    if (t.spaco.sampling == "fixed") text += ", compensation " + t.spaco.compensation + " (biased, see chunk_selection.h)";
  }
  return text;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One training run: the model, its optimizer, the data and where the run stands.
class Run {
 public:
  Run(const Config& config, const TokenDataset& data, Mesh& mesh)
      : config_(config),
        data_(data),
        mesh_(mesh),
        root_(mesh.is_root()),
        model_(build_model(config)),
        optimizer_(model_->parameter_list(), config.train),
        schedule_{config.train.lr, config.train.min_lr_ratio, config.train.warmup_steps, config.train.steps},
        train_docs_(split_documents(data, Split::kTrain, config.data.val_fraction)),
        val_docs_(split_documents(data, Split::kValidation, config.data.val_fraction)),
        loader_(data, train_docs_, config.train.seq_len, config.data.loss_on, static_cast<uint64_t>(config.run.seed)),
        attention_(choose_attention(config, mesh.shape().sp)) {
    if (mesh.dp_sp().size() > 1) {
      std::vector<torch::Tensor> params;
      for (const auto& [name, p] : model_->parameter_list()) params.push_back(p);
      reducer_ = std::make_unique<GradientReducer>(params, mesh.dp_sp(), static_cast<int64_t>(config.parallel.bucket_mb * (1 << 20)));
    }
  }

  // Every replica starts from rank 0's weights, whatever produced them (seeded init, init_from, resume).
  void synchronise_weights() {
    if (mesh_.world().size() == 1) return;
    std::vector<CommHandle> pending;
    for (const auto& [name, p] : model_->parameter_list()) pending.push_back(mesh_.world().broadcast(p.detach(), 0));
    for (auto& h : pending) h.wait();
  }

  // True on every rank when any rank asks to stop, so all of them save the same step and exit.
  bool agree_to_stop(bool mine) {
    auto flag = torch::tensor({static_cast<int64_t>(mine)});
    all_reduce_now(mesh_.world(), flag, ReduceOp::kMax);
    return flag.item<int64_t>() != 0;
  }

  // Continues from `dir`; returns its step.
  int64_t resume(const std::string& dir) {
    const CheckpointMeta meta = read_checkpoint_meta(dir);
    load_weights(dir, model_);
    optimizer_.load_state(load_optimizer_state(dir));
    loader_.set_cursor(meta.cursor);
    last_checkpoint_ = dir;
    if (root_) std::printf("resumed from %s (step %ld)\n", dir.c_str(), meta.step);
    return meta.step;
  }

  void print_start() const {
    if (!root_) return;
    const auto& c = config_;
    std::printf("loom train: %s parameters | %s dense FLOPs/token (fwd) | %ld layers, d_model %ld, %ld/%ld heads | %s\n",
                human_count(static_cast<double>(model_->num_parameters())).c_str(),
                human_count(model_->dense_flops_per_token()).c_str(), c.model.n_layers, c.model.d_model,
                c.model.n_heads, c.model.n_kv_heads, c.train.dtype.c_str());
    std::printf("data: %s | %ld documents (%zu train, %zu validation) | %s tokens | step: %ld tokens = %ld x %ld\n",
                c.data.path.c_str(), data_.num_docs(), train_docs_.size(), val_docs_.size(),
                human_count(static_cast<double>(data_.tokens.size())).c_str(), c.train.tokens_per_step,
                c.accumulation_steps(), c.train.seq_len);
    const MeshShape& shape = mesh_.shape();
    std::printf("mesh: dp %ld x sp %ld x tp %ld = %ld ranks; each dp rank takes %ld of the %ld micro-batches\n%s", shape.dp,
                shape.sp, shape.tp, shape.world(), c.accumulation_steps() / shape.dp, c.accumulation_steps(),
                mesh_.placement_table().c_str());
    std::printf("attention: %s (%s)\n", attention_.algorithm.c_str(), attention_.reason.c_str());
    if (shape.sp > 1 && c.model.lact.every > 0)
      std::printf("LaCT layers: window of %ld by halo exchange (each rank gathers the keys its window reaches)\n",
                  c.model.lact.window);
    std::printf("backprop: %s\n", describe_strategy(c.train).c_str());
    std::printf("optimizer: %s\n", optimizer_.describe().c_str());
    std::printf("run dir: %s\n", c.run.dir.c_str());
    std::fflush(stdout);
  }

  // One optimizer step over tokens_per_step tokens; `step` counts from 0. Data-parallel rank r takes
  // micro-batches r, r + dp, ... of the step, so the global batch does not depend on dp.
  StepMetrics step(int64_t step, MetricsLog* log) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t dp = mesh_.shape().dp, dp_rank = mesh_.coord().dp;
    const int64_t accumulation = config_.accumulation_steps();
    std::vector<PackedTensors> micro;
    std::vector<int64_t> micro_index;  // in the whole run, keying SpaCO's chunk sampling
    for (int64_t a = 0; a < accumulation; ++a) {
      if (a % dp == dp_rank) {
        micro.push_back(to_tensors(loader_.next()));
        micro_index.push_back(step * accumulation + a);
      } else {
        loader_.skip();
      }
    }
    // The loss is averaged over every label token of the global step, not per micro-batch or per
    // rank, so accumulation and data parallelism give the update of one big batch.
    auto labels = torch::zeros({1}, torch::kInt64);
    for (const auto& mb : micro) labels += mb.label_count;
    all_reduce_now(mesh_.dp(), labels);
    const double denominator = static_cast<double>(std::max<int64_t>(1, labels.item<int64_t>()));
    const auto params = model_->parameters();
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    StepMetrics m;
    m.step = step + 1;
    inject_rank_faults(m.step);
    auto totals = torch::zeros({3}, torch::kFloat64);  // summed loss, tokens, FLOPs of this rank
    for (size_t i = 0; i < micro.size(); ++i) {
      const double loss = backprop(micro[i], micro_index[i], denominator, i + 1 == micro.size(), totals);
      totals[0] += fault_requested("nan-loss", m.step, mesh_.world().rank()) ? NAN : loss;
    }
    if (reducer_) reducer_->finish();
    all_reduce_now(mesh_.dp_sp(), totals);
    m.loss = totals[0].item<double>() / denominator;
    m.tokens = totals[1].item<int64_t>();
    m.lr = schedule_.at(step);
    m.grad_norm = clip_grad_norm(params, config_.train.grad_clip);
    m.skipped = !std::isfinite(m.loss) || !std::isfinite(m.grad_norm);
    if (m.skipped && config_.train.on_nan == "stop") {
      if (log) log->finish_line();
      fail("step " + std::to_string(m.step) + ": the loss or gradient is not finite (loss " + std::to_string(m.loss) +
           "). The last good checkpoint is " + (last_checkpoint_.empty() ? "none" : last_checkpoint_) +
           "; lower train.lr, or set train.on_nan=skip to skip such steps");
    }
    if (!m.skipped) optimizer_.step(m.lr);
    m.step_time_s = seconds_since(t0);
    m.tokens_per_s = static_cast<double>(m.tokens) / m.step_time_s;
    m.flops_per_s = totals[2].item<double>() / m.step_time_s;
    m.peak_mem_bytes = peak_rss_bytes();
    return m;
  }

  // Forward and backward of one micro-batch, its loss divided by `denominator`; returns the summed
  // loss. The last micro-batch of the step arms the gradient reducer: with full backprop its
  // buckets start during that backward. Chunk-wise backprop runs a backward per chunk, so a
  // gradient is complete only after the sweep: it arms after it, and finish() reduces everything.
  double backprop(const PackedTensors& batch, int64_t index, double denominator, bool last, torch::Tensor& totals) {
    const TrainConfig& t = config_.train;
    if (t.strategy == "full") {
      const auto loss = micro_batch_loss(batch, totals);
      if (reducer_ && last) reducer_->arm();
      (loss / denominator).backward();
      return loss.item<double>();
    }
    const int64_t chunks = chunk_count(batch.tokens.size(0), t.chunk_size);
    const ChunkSelection selection = t.strategy == "seco" ? all_chunks(chunks)
                                                          : sample_chunks(t.spaco, chunks, config_.run.seed, index);
    totals[1] += (batch.doc_ids >= 0).sum().item<int64_t>();
    totals[2] += training_flops(model_, batch);
    const double loss = chunkwise_backward(model_, batch, t.chunk_size, selection, denominator).loss;
    if (reducer_ && last) reducer_->arm();
    return loss;
  }

  // The summed loss of this rank's part of one micro-batch: all of it, or with sequence parallelism
  // its shard, whose attention runs over the sp group. Adds its tokens and FLOPs to `totals`.
  torch::Tensor micro_batch_loss(const PackedTensors& batch, torch::Tensor& totals) {
    const int64_t sp = mesh_.shape().sp;
    totals[2] += training_flops(model_, batch) / static_cast<double>(sp);
    if (sp == 1) {
      totals[1] += (batch.doc_ids >= 0).sum().item<int64_t>();
      return summed_loss(model_->forward(batch.tokens, batch.positions, batch.doc_ids), batch.labels);
    }
    const SequenceLayout layout = make_sequence_layout(batch.positions, batch.doc_ids, sp, true);
    const PackedTensors mine = shard(batch, layout, mesh_.coord().sp);
    const AttendFn attend = model_sequence_attention(attention_.algorithm, layout, config_.model, mesh_.sp(), mesh_.sp_back());
    const FastWeightSync sync{batch.positions, batch.doc_ids, mine.positions,
                              [this](const torch::Tensor& t) { return differentiable_all_reduce(t, mesh_.sp_sync()); }};
    totals[1] += (mine.doc_ids >= 0).sum().item<int64_t>();
    return summed_loss(model_->forward(mine.tokens, mine.positions, mine.doc_ids, &attend, &sync), mine.labels);
  }

  // Rank 0 evaluates; the others wait for it at the next collective.
  void evaluate_now(int64_t step, MetricsLog& log) {
    if (val_docs_.empty() || !root_) return;
    const EvalResult result = evaluate(model_, data_, val_docs_, config_.train.seq_len, config_.eval.max_docs);
    auto record = result.to_json();
    record["step"] = step;
    record["kind"] = "eval";
    log.record(record);
    log.finish_line();
    std::printf("eval at step %ld: loss %.4f, perplexity %.3f", step, result.loss, result.perplexity);
    if (result.has_answers) std::printf(", passkey retrieval %ld/%ld", result.correct, result.answered);
    if (result.cut > 0) std::printf(" (%ld of %ld documents cut at train.seq_len)", result.cut, result.docs);
    std::printf("\n");
  }

  // Weights and optimizer state are replicated, so rank 0 writes them; the barrier keeps every rank
  // from exiting (or a requeued job from resuming) before the checkpoint is complete.
  const std::string& checkpoint(int64_t step) {
    if (root_) {
      save_checkpoint(config_.run.dir, step, model_, optimizer_.state(), loader_.cursor(), config_);
      prune_checkpoints(config_.run.dir, config_.checkpoint.keep_last);
    }
    barrier_now(mesh_.world());
    last_checkpoint_ = checkpoint_dir(config_.run.dir, step);
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


  // The deliberate failures of the failure-handling tests (see fault_injection.h).
  void inject_rank_faults(int64_t step) const {
    const int rank = mesh_.world().rank();
    if (fault_requested("throw", step, rank)) fail("injected failure (LOOM_FAULT) at step " + std::to_string(step));
    if (fault_requested("kill", step, rank)) std::raise(SIGKILL);
    if (fault_requested("signal", step, rank)) std::raise(SIGUSR1);
    while (fault_requested("hang", step, rank)) std::this_thread::sleep_for(std::chrono::seconds(1));
  }

  const Config& config_;
  const TokenDataset& data_;
  Mesh& mesh_;
  bool root_;
  Llama model_;
  TrainingOptimizer optimizer_;
  LrSchedule schedule_;
  std::vector<int64_t> train_docs_, val_docs_;
  BatchLoader loader_;
  AttentionChoice attention_;
  std::unique_ptr<GradientReducer> reducer_;
  std::string last_checkpoint_;
};

}  // namespace

// Training with tp above 1 needs tensor-parallel layers that a later Loom version adds; the mesh,
// launch and dry run already accept the degree.
void check_trainable(const MeshShape& shape) {
  check(shape.tp == 1, "parallel.tp = " + std::to_string(shape.tp) +
                           ": tensor-parallel layers are not in this version of Loom yet; train with parallel.tp: 1");
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float64") return torch::kFloat64;
  if (name == "bfloat16") return torch::kBFloat16;
  return torch::kFloat32;
}

TrainSummary train(const Config& config, const TrainOptions& options) {
  // The data is checked before the run dir is touched, so a bad data path leaves nothing behind.
  const TokenDataset data = load_training_data(config);
  auto world = mpi_world(config.parallel.timeout_s);
  const MeshShape shape = resolve_mesh_shape(config, world->size());
  check_trainable(shape);
  Mesh mesh(std::move(world), shape);
  if (mesh.is_root()) prepare_run_dir(config, options);
  barrier_now(mesh.world());
  if (config.train.threads > 0) torch::set_num_threads(static_cast<int>(config.train.threads));
  Run run(config, data, mesh);
  const std::string resume_from = options.resume.empty() ? "" : resolve_checkpoint(options.resume, config.run.dir);
  const int64_t start = resume_from.empty() ? 0 : run.resume(resume_from);
  run.synchronise_weights();
  run.print_start();

  std::optional<MetricsLog> log;
  if (mesh.is_root()) log.emplace(config.run.dir, start, config.train.steps, config.log.progress);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  TrainSummary summary;
  for (int64_t step = start; step < config.train.steps; ++step) {
    const StepMetrics m = run.step(step, log ? &*log : nullptr);
    if (log) log->step(m, m.step % config.log.interval == 0 || m.step == config.train.steps);
    summary.last_loss = m.loss;
    summary.steps_done = m.step;
    if (log && config.eval.interval > 0 && m.step % config.eval.interval == 0) run.evaluate_now(m.step, *log);
    // A preemption signal may reach only some ranks (or reach them at different steps): they agree
    // at every step boundary, so all of them save the same step.
    const bool stop = run.agree_to_stop(g_stop_signal != 0);
    if (stop || m.step == config.train.steps || (config.checkpoint.interval > 0 && m.step % config.checkpoint.interval == 0))
      run.checkpoint(m.step);
    if (stop) {
      if (log) {
        log->finish_line();
        const std::string who = g_stop_signal != 0 ? "received signal " + std::to_string(static_cast<int>(g_stop_signal))
                                                   : "another rank received a stop signal";
        std::printf("%s: saved %s and stopping; continue with --resume auto\n", who.c_str(), run.last_checkpoint().c_str());
      }
      summary.preempted = true;
      break;
    }
  }
  if (log) log->finish_line();
  summary.checkpoint = run.last_checkpoint();
  return summary;
}

}  // namespace loom
