#include "runtime/train/train_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <thread>
#include <vector>

#include "optim/adamw.h"
#include "runtime/core/error.h"
#include "runtime/core/fault_injection.h"

namespace loom {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The deliberate failures of the failure-handling tests (see fault_injection.h).
void inject_rank_faults(int64_t step, int rank) {
  if (fault_requested("throw", step, rank)) fail("injected failure (LOOM_FAULT) at step " + std::to_string(step));
  if (fault_requested("kill", step, rank)) std::raise(SIGKILL);
  if (fault_requested("signal", step, rank)) std::raise(SIGUSR1);
  while (fault_requested("hang", step, rank)) std::this_thread::sleep_for(std::chrono::seconds(1));
}

// Data-parallel rank r takes micro-batches r, r + dp, ... of the step, so the global batch does not
// depend on dp; the loader skips the others without building them. A placement reads them all and
// gives this rank its part of their documents.
StepWork my_work(TrainingRun& run, int64_t step) {
  const int64_t dp = run.mesh.shape().dp, dp_rank = run.mesh.coord().dp;
  const int64_t accumulation = run.config.accumulation_steps();
  if (run.placement) {
    std::vector<PackedTensors> all;
    for (int64_t a = 0; a < accumulation; ++a) all.push_back(to_tensors(run.loader.next()));
    return run.placement->place(all, step * accumulation);
  }
  StepWork work;
  for (int64_t a = 0; a < accumulation; ++a) {
    if (a % dp == dp_rank) work.micro.push_back({to_tensors(run.loader.next()), step * accumulation + a, false});
    else run.loader.skip();
  }
  if (!work.micro.empty()) work.micro.back().last = true;
  auto labels = torch::zeros({1}, torch::kInt64);
  for (const auto& mb : work.micro) labels += mb.tokens.label_count;
  all_reduce_now(*run.mesh.host().dp, labels);
  work.labels = labels.item<int64_t>();
  return work;
}

// Reducers that reduce after every backward (ZeRO stage 2) issue one round of collectives per
// backward pass, and the replicas must issue as many rounds: where passes differ (a placement's
// micro-batches, SpaCO's sampled chunks) the ranks agree on the most before any round starts, and
// those with fewer passes add empty rounds (an armed reducer with no gradient sends zeros).
class EveryBackwardRounds {
 public:
  EveryBackwardRounds(TrainingRun& run, const StepWork& work) {
    for (auto* r : run.update->reducers())
      if (r->reduces_every_backward()) reducers_.push_back(r);
    if (reducers_.empty()) return;
    for (const MicroBatch& mb : work.micro) mine_ += run.backprop->backwards(mb);
    auto most = torch::tensor({mine_}, torch::kInt64);
    all_reduce_now(*run.mesh.host().dp_sp, most, ReduceOp::kMax);
    rounds_ = std::max<int64_t>(1, most.item<int64_t>());
  }
  void add_empty_rounds() {
    for (int64_t i = mine_; i < rounds_; ++i)
      for (auto* r : reducers_) r->arm();
  }

 private:
  std::vector<GradientReducer*> reducers_;
  int64_t mine_ = 0, rounds_ = 0;
};

}  // namespace

StepMetrics train_step(TrainingRun& run, int64_t step, MetricsLog* log) {
  const auto t0 = std::chrono::steady_clock::now();
  const StepWork work = my_work(run, step);
  // The loss is averaged over every label token of the global step, not per micro-batch or per
  // rank, so accumulation and data parallelism give the update of one big batch.
  const double denominator = static_cast<double>(std::max<int64_t>(1, work.labels));
  run.update->zero_grads();
  StepMetrics m;
  m.step = step + 1;
  if (run.placement) m.split_sequences = work.rings;
  const int rank = run.mesh.host().world->rank();
  inject_rank_faults(m.step, rank);
  auto totals = torch::zeros({3}, torch::kFloat64);  // summed loss, tokens, FLOPs of this rank
  EveryBackwardRounds rounds(run, work);
  for (const MicroBatch& mb : work.micro) {
    const Backpropagated b = run.backprop->run(mb, denominator);
    totals[0] += fault_requested("nan-loss", m.step, rank) ? NAN : b.loss;
    totals[1] += b.tokens;
    totals[2] += b.flops;
  }
  rounds.add_empty_rounds();
  // A rank the placement gave nothing to compute still adds its (zero) share to every reduction.
  if (work.micro.empty())
    for (auto* r : run.update->reducers())
      if (!r->reduces_every_backward()) r->arm();
  run.update->finish_reductions();
  all_reduce_now(*run.mesh.host().dp_sp, totals);
  m.loss = totals[0].item<double>() / denominator;
  m.tokens = totals[1].item<int64_t>();
  m.lr = run.schedule.at(step);
  m.grad_norm = run.update->clip_gradients(run.config.train.grad_clip);
  m.skipped = !std::isfinite(m.loss) || !std::isfinite(m.grad_norm);
  if (m.skipped && run.config.train.on_nan == "stop") {
    if (log) log->finish_line();
    fail("step " + std::to_string(m.step) + ": the loss or gradient is not finite (loss " + std::to_string(m.loss) +
         "). The last good checkpoint is " + (run.last_checkpoint().empty() ? "none" : run.last_checkpoint()) +
         "; lower train.lr, or set train.on_nan=skip to skip such steps");
  }
  if (!m.skipped) {
    run.update->step(m.lr);
  }
  m.step_time_s = seconds_since(t0);
  m.tokens_per_s = static_cast<double>(m.tokens) / m.step_time_s;
  m.flops_per_s = totals[2].item<double>() / m.step_time_s;
  // The model's FLOP/s (summed over dp x sp, which each tp rank does alike) over the peak of every
  // rank of the job.
  const double peak = run.config.log.peak_tflops * 1e12;
  if (peak > 0) m.mfu = m.flops_per_s / (peak * static_cast<double>(run.mesh.shape().world()));
  m.peak_mem_bytes = peak_rss_bytes();
  return m;
}

}  // namespace loom
