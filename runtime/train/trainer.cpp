#include "runtime/train/trainer.h"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/mesh.h"
#if defined(LOOM_HAVE_NCCL)
#include "parallel/comm/nccl_communicator.h"
#endif
#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/text_file.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/train_step.h"
#include "runtime/train/training_run.h"

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

// The device groups of the mesh: NCCL communicators on GPUs, the MPI host groups themselves on the CPU.
Mesh::DeviceGroupFactory device_groups(c10::Device device, int64_t world_size, double timeout_s) {
  if (!device.is_cuda() || world_size == 1) return {};
#if defined(LOOM_HAVE_NCCL)
  return [device, timeout_s](Communicator& host) {
    return nccl_communicator(host.split(0, host.rank(), host.name()), device.index(), timeout_s);
  };
#else
  fail("train.device = cuda on " + std::to_string(world_size) + " ranks needs the NCCL backend, which this build lacks "
       "(configure where the CUDA toolkit and NCCL are found), or run with train.device: cpu");
#endif
}

}  // namespace

TokenDataset load_training_data(const Config& config) {
  check(!config.data.path.empty(), "data.path is not set: point it at an HDF5 dataset (make one with `loom data synth` or `loom data prepare`)");
  TokenDataset data = read_dataset(config.data.path);
  check(data.vocab_size <= config.model.vocab_size,
        "dataset '" + config.data.path + "' has vocab size " + std::to_string(data.vocab_size) + " but model.vocab_size is " +
            std::to_string(config.model.vocab_size) + "; set model.vocab_size to at least " + std::to_string(data.vocab_size));
  return data;
}

void check_trainable(const Config& config, const MeshShape& shape) {
  if (shape.tp == 1) return;
  const std::string tp = config.where("parallel.tp") + " = " + std::to_string(shape.tp);
  check(config.model.ffn_dim() % shape.tp == 0, tp + " must divide the MLP's hidden size " +
                                                   std::to_string(config.model.ffn_dim()) + " (model.d_ff)");
  check(config.model.lact.every == 0, tp + " with LaCT layers (model.lact.every) is not in this version; use parallel.tp: 1");
  check(config.train.optimizer == "adamw" || config.parallel.zero == 0 || shape.dp * shape.sp == 1,
        tp + " with train.optimizer = muon and parallel.zero = " + std::to_string(config.parallel.zero) +
            ": ZeRO deals Muon's whole matrices to the replicas, and tensor parallelism splits them; use parallel.zero: "
            "0 (Muon then gathers each split matrix over tp), or adamw");
}

TrainSummary train(const Config& config, const TrainOptions& options) {
  // The data is checked before the run dir is touched, so a bad data path leaves nothing behind.
  const TokenDataset data = load_training_data(config);
  auto world = mpi_world(config.parallel.timeout_s);
  const MeshShape shape = resolve_mesh_shape(config, world->size());
  check_trainable(config, shape);
  const c10::Device device = choose_device(config.train.device, launcher_local_rank());
  Mesh mesh(std::move(world), shape, device, device_groups(device, shape.world(), config.parallel.timeout_s));
  if (mesh.is_root()) prepare_run_dir(config, options);
  barrier_now(*mesh.host().world);
  if (config.train.threads > 0) torch::set_num_threads(static_cast<int>(config.train.threads));
  TrainingRun run(config, data, mesh, device);
  const std::string resume_from = options.resume.empty() ? "" : resolve_checkpoint(options.resume, config.run.dir);
  const int64_t start = resume_from.empty() ? 0 : run.resume(resume_from);
  run.synchronise_weights();
  run.print_start();

  std::optional<MetricsLog> log;
  if (mesh.is_root()) log.emplace(config.run.dir, start, config.train.steps, config.log.progress, config.log.tensorboard);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  TrainSummary summary;
  for (int64_t step = start; step < config.train.steps; ++step) {
    const StepMetrics m = train_step(run, step, log ? &*log : nullptr);
    if (log) log->step(m, m.step % config.log.interval == 0 || m.step == config.train.steps);
    summary.last_loss = m.loss;
    summary.steps_done = m.step;
    if (config.eval.interval > 0 && m.step % config.eval.interval == 0) run.evaluate_now(m.step, log ? &*log : nullptr);
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
