#include "runtime/train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "runtime/core/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/core/safetensors.h"
#include "runtime/core/text_file.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

fs::path checkpoints_dir(const std::string& run_dir) { return fs::path(run_dir) / "checkpoints"; }

void crash_if_requested(int64_t step, int rank) {
  if (!fault_requested("checkpoint-write", step, rank)) return;
  std::fprintf(stderr, "loom: LOOM_FAULT=checkpoint-write@%ld: aborting while writing the checkpoint\n", step);
  std::abort();
}

fs::path temporary_dir(const std::string& run_dir, int64_t step) {
  return checkpoints_dir(run_dir) / (".tmp-step-" + std::to_string(step));
}

void make_temporary_dir(const std::string& run_dir, int64_t step) {
  fs::create_directories(checkpoints_dir(run_dir));
  fs::remove_all(temporary_dir(run_dir, step));
  fs::create_directories(temporary_dir(run_dir, step));
}

// This rank's two files; rank 0's optimizer file also holds its RNG state.
void write_share(const std::string& run_dir, int64_t step, const CheckpointShare& mine, int rank, int shares) {
  const fs::path dir = temporary_dir(run_dir, step);
  write_checkpoint_file((dir / checkpoint_file_name("model", rank, shares)).string(), mine.model);
  crash_if_requested(step, rank);
  TensorPieces optimizer = mine.optimizer;
  if (rank == 0) {
    const torch::Tensor rng = at::detail::getDefaultCPUGenerator().get_state();
    optimizer.push_back({"rng.torch_cpu", rng.sizes().vec(), 0, rng});
  }
  write_checkpoint_file((dir / checkpoint_file_name("optimizer", rank, shares)).string(), optimizer);
}

// Rank 0, once every share is written: the state and config, then the folder and `latest` renamed
// into place.
std::string commit(const std::string& run_dir, int64_t step, int shares, const LoaderCursor& cursor, const Config& config) {
  const fs::path root = checkpoints_dir(run_dir), tmp_dir = temporary_dir(run_dir, step);
  const fs::path final_dir = checkpoint_dir(run_dir, step);
  const nlohmann::json state = {{"format", "loom-checkpoint"}, {"version", kCheckpointVersion}, {"step", step},
                                {"shares", shares}, {"cursor", {{"epoch", cursor.epoch}, {"index", cursor.index}}}};
  write_text_file((tmp_dir / "state.json").string(), state.dump(2) + "\n");
  write_text_file((tmp_dir / "config.yaml").string(), to_yaml(config));
  fs::remove_all(final_dir);
  fs::rename(tmp_dir, final_dir);
  write_text_file((root / "latest.tmp").string(), final_dir.filename().string() + "\n");
  fs::rename(root / "latest.tmp", root / "latest");
  return final_dir.string();
}

std::vector<int64_t> checkpoint_steps(const std::string& run_dir) {
  std::vector<int64_t> steps;
  if (!fs::exists(checkpoints_dir(run_dir))) return steps;
  for (const auto& e : fs::directory_iterator(checkpoints_dir(run_dir))) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step-", 0) == 0) steps.push_back(std::stoll(name.substr(5)));
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

}  // namespace

std::string checkpoint_dir(const std::string& run_dir, int64_t step) {
  return (checkpoints_dir(run_dir) / ("step-" + std::to_string(step))).string();
}

std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointShare& mine, const LoaderCursor& cursor,
                            const Config& config, Communicator& world) {
  if (world.rank() == 0) make_temporary_dir(run_dir, step);
  barrier_now(world);
  write_share(run_dir, step, mine, world.rank(), world.size());
  barrier_now(world);
  if (world.rank() == 0) commit(run_dir, step, world.size(), cursor, config);
  // No rank goes on (or exits, letting a requeued job resume) before the checkpoint is in place.
  barrier_now(world);
  return checkpoint_dir(run_dir, step);
}

std::string save_checkpoint(const std::string& run_dir, int64_t step, const NamedTensors& weights,
                            const NamedTensors& optimizer_state, const LoaderCursor& cursor, const Config& config) {
  make_temporary_dir(run_dir, step);
  write_share(run_dir, step, {whole_pieces(weights), whole_pieces(optimizer_state)}, 0, 1);
  return commit(run_dir, step, 1, cursor, config);
}

TensorPieces writer_share(const NamedTensors& all, int64_t rank, int64_t ranks) {
  const std::vector<int64_t> owners = balanced_owners(all, ranks);
  TensorPieces out;
  for (size_t i = 0; i < all.size(); ++i)
    if (owners[i] == rank) out.push_back({all[i].first, all[i].second.sizes().vec(), 0, all[i].second});
  return out;
}

void prune_checkpoints(const std::string& run_dir, int64_t keep_last) {
  const auto steps = checkpoint_steps(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < steps.size(); ++i)
    fs::remove_all(checkpoints_dir(run_dir) / ("step-" + std::to_string(steps[i])));
}

std::string resolve_checkpoint(const std::string& path, const std::string& run_dir) {
  auto from_run_dir = [](const std::string& dir) -> std::string {
    const fs::path latest = checkpoints_dir(dir) / "latest";
    if (!fs::exists(latest)) return "";
    std::string name = read_text_file(latest.string());
    name.erase(name.find_last_not_of(" \n\r\t") + 1);
    const fs::path target = checkpoints_dir(dir) / name;
    check(fs::is_directory(target), "'" + latest.string() + "' points to '" + name + "', which is missing");
    return target.string();
  };
  if (path == "auto") return from_run_dir(run_dir);
  check(fs::exists(path), "checkpoint '" + path + "' does not exist; pass a checkpoints/step-N folder or a run dir that has checkpoints");
  if (fs::exists(fs::path(path) / "state.json")) return path;
  const std::string latest = from_run_dir(path);
  check(!latest.empty(), "'" + path + "' is neither a checkpoint folder (no state.json) nor a run dir with checkpoints");
  return latest;
}

CheckpointMeta read_checkpoint_meta(const std::string& dir) {
  const fs::path state_path = fs::path(dir) / "state.json";
  check(fs::exists(state_path), "'" + dir + "' is not a Loom checkpoint: it has no state.json");
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(read_text_file(state_path.string()));
  } catch (const nlohmann::json::exception& e) {
    fail("corrupt checkpoint '" + dir + "': state.json is not valid JSON (" + e.what() + ")");
  }
  check(state.value("format", "") == "loom-checkpoint", "'" + dir + "': state.json is not a Loom checkpoint's");
  check(state.value("version", -1) == kCheckpointVersion,
        "'" + dir + "': checkpoint version " + std::to_string(state.value("version", -1)) + " is not the supported " +
            std::to_string(kCheckpointVersion));
  CheckpointMeta meta;
  meta.dir = dir;
  try {
    meta.step = state.at("step").get<int64_t>();
    meta.shares = state.value("shares", int64_t{1});
    meta.cursor = {state.at("cursor").at("epoch").get<int64_t>(), state.at("cursor").at("index").get<int64_t>()};
  } catch (const nlohmann::json::exception& e) {
    fail("corrupt checkpoint '" + dir + "': state.json lacks step or cursor (" + e.what() + ")");
  }
  check(meta.shares >= 1, "corrupt checkpoint '" + dir + "': state.json says it was written by " + std::to_string(meta.shares) + " ranks");
  const std::string config_path = (fs::path(dir) / "config.yaml").string();
  meta.config = parse_config(read_text_file(config_path), config_path);
  return meta;
}

CheckpointTensors checkpoint_tensors(const CheckpointMeta& meta, const std::string& kind) {
  return CheckpointTensors(meta.dir, kind, meta.shares);
}

void load_weights(const std::string& dir, const NamedTensors& into, const TensorLayout& layout) {
  const CheckpointTensors stored = checkpoint_tensors(read_checkpoint_meta(dir), "model");
  torch::NoGradGuard no_grad;
  size_t used = 0;
  for (const auto& [name, tensor] : into) {
    check(stored.contains(name), "checkpoint '" + dir + "' has no tensor '" + name + "': it was saved from another model architecture");
    const TensorShard shard = shard_of(layout, name);
    stored.check_shape(name, whole_shape(shard, tensor.sizes().vec()));
    tensor.copy_(take_shard(stored.load(name), shard));
    ++used;
  }
  check(used == stored.names().size(), "checkpoint '" + dir + "' holds tensors this model does not have (e.g. tied vs untied embeddings)");
}

void restore_rng_state(const CheckpointTensors& optimizer) {
  check(optimizer.contains("rng.torch_cpu"), "a checkpoint's optimizer files lack the RNG state");
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(optimizer.load("rng.torch_cpu"));
}

}  // namespace loom
