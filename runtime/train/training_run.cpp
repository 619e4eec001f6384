#include "runtime/train/training_run.h"

#include <algorithm>
#include <cstdio>

#include "runtime/model/parallelize.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/chunkwise/chunkwise_backprop.h"
#include "runtime/train/evaluation.h"
#include "runtime/train/full_backprop.h"

namespace loom {
namespace {

// The shortest sequence token splitting cuts: `on` cuts whatever leaves each half a row per rank.
int64_t weave_min_tokens(const Config& config, const MeshShape& shape) {
  const int64_t at_least = 2 * shape.tp;
  return config.parallel.token_weave == "on" ? at_least : std::max(config.parallel.token_weave_min_tokens, at_least);
}

// TokenWeave's token splitting runs with tensor parallelism on whole sequences long enough, unless
// switched off, or full activation checkpointing or chunk-wise backprop is on (config.cpp refuses
// `on` with either).
bool splits_tokens(const Config& config, const MeshShape& shape) {
  return shape.tp > 1 && config.parallel.token_weave != "off" && shape.sp == 1 &&
         config.train.activation_checkpoint != "full" && config.train.strategy == "full" &&
         config.train.seq_len >= weave_min_tokens(config, shape);
}

std::unique_ptr<BoundaryWorker> make_boundary_worker(const Config& config, const MeshShape& shape) {
  return splits_tokens(config, shape) ? std::make_unique<BoundaryWorker>() : nullptr;
}

// Initialised on the host from the run's seed (the same weights whatever the device and layout),
// then moved and cut as the parallel plan says.
Llama build_model(const Config& config, const Precision& precision, const Mesh& mesh, const AttentionChoice& attention,
                  BoundaryWorker* boundary_worker, TensorLayout& layout) {
  torch::manual_seed(config.run.seed);
  Llama model(config.model);
  model->to(precision.device, precision.param);
  const MeshGroups& g = mesh.device();
  layout = parallelize(model, {attention.algorithm, g.sp, g.sp_back, g.sp_sync, config.train.activation_checkpoint,
                               g.tp, {g.tp_weave, boundary_worker, weave_min_tokens(config, mesh.shape())}});
  return model;
}

// The strategy train.strategy names; the reducers are armed before the gradients of the step's
// last micro-batch start to arrive (stage 2: of every micro-batch, where the strategy runs one
// backward per micro-batch; chunk-wise strategies arm after their chunks' backwards).
// Under a placement a micro-batch is whole on this rank unless it names its ring.
std::unique_ptr<Backprop> make_backprop(const Config& config, Llama& model, const Mesh& mesh, WeightUpdate& update) {
  const std::vector<GradientReducer*> arm = update.reducers();
  const bool placed = config.parallel.placement == "zeppelin";
  if (config.train.strategy == "full")
    return std::make_unique<FullBackprop>(model, placed ? 1 : mesh.shape().sp, placed ? 0 : mesh.coord().sp,
                                          config.train.loss_chunk, arm);
  return std::make_unique<ChunkwiseBackprop>(model, config.train, config.run.seed, placed ? nullptr : mesh.device().sp, arm);
}

std::string describe_strategy(const Config& c, int64_t sp) {
  const TrainConfig& t = c.train;
  if (t.strategy == "full") return "full sequence";
  std::string text = t.strategy + ", chunks of " + std::to_string(t.chunk_size) + " tokens (" +
                     std::to_string(chunk_count(t.seq_len, t.chunk_size)) + " per sequence)";
  if (c.parallel.placement == "zeppelin")
    text += "; a split document's chunks are cut over its ring, their K/V all-gathered";
  else if (sp > 1)
    text += ", each cut over the " + std::to_string(sp) + " sp ranks, its K/V all-gathered (the attention line does "
            "not apply)";
  if (t.strategy == "spaco") {
    char budget[32];
    std::snprintf(budget, sizeof budget, "%g", t.spaco.budget);
    text += ", " + t.spaco.sampling + " sampling of " + budget + " of them";
    if (t.spaco.sampling == "fixed") text += ", compensation " + t.spaco.compensation + " (biased, see chunk_selection.h)";
  }
  return text;
}

}  // namespace

TrainingRun::TrainingRun(const Config& config, const TokenDataset& data, Mesh& mesh, c10::Device device)
    : config(config),
      data(data),
      mesh(mesh),
      precision(resolve_precision(config, device)),
      attention(choose_attention(config, config.parallel.placement == "zeppelin" ? mesh.shape().dp * mesh.shape().sp
                                                                                 : mesh.shape().sp)),
      boundary_worker(make_boundary_worker(config, mesh.shape())),
      model(build_model(config, precision, mesh, attention, boundary_worker.get(), layout)),
      update(make_weight_update(config, mesh, model, precision, layout)),
      schedule{config.train.lr, config.train.min_lr_ratio, config.train.warmup_steps, config.train.steps},
      train_docs(split_documents(data, Split::kTrain, config.data.val_fraction)),
      val_docs(split_documents(data, Split::kValidation, config.data.val_fraction)),
      loader(data, train_docs, config.train.seq_len, config.data.loss_on, static_cast<uint64_t>(config.run.seed)),
      backprop(make_backprop(config, model, mesh, *update)),
      placement(config.parallel.placement == "zeppelin" ? std::make_unique<StepPlacement>(config, mesh) : nullptr) {
  if (!config.run.init_from.empty()) update->load(resolve_checkpoint(config.run.init_from, config.run.dir), false);
}

void TrainingRun::synchronise_weights() { update->synchronise(); }

bool TrainingRun::agree_to_stop(bool mine) {
  auto flag = torch::tensor({static_cast<int64_t>(mine)});
  all_reduce_now(*mesh.host().world, flag, ReduceOp::kMax);
  return flag.item<int64_t>() != 0;
}

int64_t TrainingRun::resume(const std::string& dir) {
  const CheckpointMeta meta = read_checkpoint_meta(dir);
  update->load(dir, true);
  loader.set_cursor(meta.cursor);
  last_checkpoint_ = dir;
  if (mesh.is_root()) std::printf("resumed from %s (step %ld)\n", dir.c_str(), meta.step);
  return meta.step;
}

void TrainingRun::print_start() const {
  if (!mesh.is_root()) return;
  const auto& c = config;
  std::printf("loom train: %s parameters | %s dense FLOPs/token (fwd) | %ld layers, d_model %ld, %ld/%ld heads | %s\n",
              human_count(static_cast<double>(model->num_parameters())).c_str(),
              human_count(model->dense_flops_per_token()).c_str(), c.model.n_layers, c.model.d_model, c.model.n_heads,
              c.model.n_kv_heads, c.train.dtype.c_str());
  std::printf("data: %s | %ld documents (%zu train, %zu validation) | %s tokens | step: %ld tokens = %ld x %ld\n",
              c.data.path.c_str(), data.num_docs(), train_docs.size(), val_docs.size(),
              human_count(static_cast<double>(data.num_tokens())).c_str(), c.train.tokens_per_step, c.accumulation_steps(),
              c.train.seq_len);
  const MeshShape& shape = mesh.shape();
  std::printf("mesh: dp %ld x sp %ld x tp %ld = %ld ranks; ", shape.dp, shape.sp, shape.tp, shape.world());
  if (placement)
    std::printf("placement: zeppelin over the %ld dp x sp ranks of %s (%d x %d), at most %ld tokens of a sequence per "
                "rank; every rank reads the step's %ld micro-batches\n%s",
                shape.dp * shape.sp, placement->topology().name.c_str(), placement->topology().nodes,
                placement->topology().ranks_per_node, placement_cap(c), c.accumulation_steps(), mesh.placement_table().c_str());
  else
    std::printf("each dp rank takes %ld of the %ld micro-batches\n%s", c.accumulation_steps() / shape.dp,
                c.accumulation_steps(), mesh.placement_table().c_str());
  std::printf("attention: %s (%s)\n", attention.algorithm.c_str(), attention.reason.c_str());
  if (shape.sp > 1 && c.model.lact.every > 0)
    std::printf("LaCT layers: window of %ld by halo exchange (each rank gathers the keys its window reaches)\n",
                c.model.lact.window);
  if (boundary_worker)
    std::printf("token splitting: sequences of at least %ld tokens run as two interleaved halves (TokenWeave)\n",
                weave_min_tokens(c, shape));
  std::printf("precision: %s\n", precision.describe().c_str());
  std::printf("backprop: %s\n", describe_strategy(c, shape.sp).c_str());
  std::printf("optimizer: %s\n", update->describe().c_str());
  std::printf("run dir: %s\n", c.run.dir.c_str());
  std::fflush(stdout);
}

void TrainingRun::evaluate_now(int64_t step, MetricsLog* log) {
  const MeshCoord c = mesh.coord();
  if (val_docs.empty() || c.dp != 0 || c.sp != 0) return;
  const EvalResult result = evaluate(model, data, val_docs, config.train.seq_len, config.eval.max_docs, config.data.loss_on);
  if (!log) return;
  auto record = result.to_json();
  record["step"] = step;
  record["kind"] = "eval";
  log->record(record);
  log->finish_line();
  // Names its sample (the first eval.max_docs held-out documents), so it is not read against `loom
  // eval`'s figure over every held-out document.
  std::printf("eval at step %ld on %ld held-out documents: loss %.4f, perplexity %.3f", step, result.docs, result.loss,
              result.perplexity);
  if (result.has_answers) std::printf(", retrieval %ld/%ld", result.correct, result.answered);
  if (result.cut > 0) std::printf(" (%ld of %ld documents cut at train.seq_len)", result.cut, result.docs);
  std::printf("\n");
}

// Every rank writes its share in parallel (checkpoint.h); no rank holds the whole state.
const std::string& TrainingRun::checkpoint(int64_t step) {
  last_checkpoint_ = save_checkpoint(config.run.dir, step, update->share(), loader.cursor(), config, *mesh.host().world);
  if (mesh.is_root()) prune_checkpoints(config.run.dir, config.checkpoint.keep_last);
  return last_checkpoint_;
}

}  // namespace loom
