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

void crash_if_requested(int64_t step) {
  if (!fault_requested("checkpoint-write", step)) return;
  std::fprintf(stderr, "loom: LOOM_FAULT=checkpoint-write@%ld: aborting while writing the checkpoint\n", step);
  std::abort();
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

std::string save_checkpoint(const std::string& run_dir, int64_t step, const NamedTensors& weights,
                            const NamedTensors& optimizer_state, const LoaderCursor& cursor, const Config& config) {
  const fs::path root = checkpoints_dir(run_dir);
  const fs::path final_dir = checkpoint_dir(run_dir, step);
  const fs::path tmp_dir = root / (".tmp-step-" + std::to_string(step));
  fs::create_directories(root);
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);

  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"loom_checkpoint_version", std::to_string(kCheckpointVersion)}};
  write_safetensors((tmp_dir / "model.safetensors").string(), weights, meta);
  crash_if_requested(step);
  auto opt_state = optimizer_state;
  opt_state.emplace_back("rng.torch_cpu", at::detail::getDefaultCPUGenerator().get_state());
  write_safetensors((tmp_dir / "optimizer.safetensors").string(), opt_state, meta);
  const nlohmann::json state = {{"format", "loom-checkpoint"}, {"version", kCheckpointVersion}, {"step", step},
                                {"cursor", {{"epoch", cursor.epoch}, {"index", cursor.index}}}};
  write_text_file((tmp_dir / "state.json").string(), state.dump(2) + "\n");
  write_text_file((tmp_dir / "config.yaml").string(), to_yaml(config));

  fs::remove_all(final_dir);
  fs::rename(tmp_dir, final_dir);
  write_text_file((root / "latest.tmp").string(), final_dir.filename().string() + "\n");
  fs::rename(root / "latest.tmp", root / "latest");
  return final_dir.string();
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
  check(fs::exists(path), "checkpoint '" + path + "' does not exist; pass a checkpoints/step-N folder, a run dir, or --resume auto");
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
    meta.cursor = {state.at("cursor").at("epoch").get<int64_t>(), state.at("cursor").at("index").get<int64_t>()};
  } catch (const nlohmann::json::exception& e) {
    fail("corrupt checkpoint '" + dir + "': state.json lacks step or cursor (" + e.what() + ")");
  }
  const std::string config_path = (fs::path(dir) / "config.yaml").string();
  meta.config = parse_config(read_text_file(config_path), config_path);
  return meta;
}

void load_weights(const std::string& dir, const NamedTensors& into, const TensorLayout& layout) {
  const SafetensorsFile file((fs::path(dir) / "model.safetensors").string());
  torch::NoGradGuard no_grad;
  size_t used = 0;
  for (const auto& [name, tensor] : into) {
    check(file.contains(name), "checkpoint '" + dir + "' has no tensor '" + name + "': it was saved from another model architecture");
    const auto& info = file.info(name);
    const TensorShard shard = shard_of(layout, name);
    auto whole = tensor.sizes().vec();
    if (shard.split()) whole[static_cast<size_t>(shard.dim)] = shard.whole;
    check(info.shape == whole,
          "checkpoint tensor '" + name + "' has shape " + c10::str(c10::IntArrayRef(info.shape)) + " but the model expects " +
              c10::str(c10::IntArrayRef(whole)) + ": the checkpoint is from another model shape (check the model: section)");
    tensor.copy_(take_shard(file.load(name), shard));
    ++used;
  }
  check(used == file.names().size(), "checkpoint '" + dir + "' holds tensors this model does not have (e.g. tied vs untied embeddings)");
}

NamedTensors load_optimizer_state(const std::string& dir) {
  const SafetensorsFile file((fs::path(dir) / "optimizer.safetensors").string());
  check(file.contains("rng.torch_cpu"), "checkpoint '" + dir + "' lacks the RNG state");
  NamedTensors state;
  for (const auto& name : file.names())
    if (name != "rng.torch_cpu") state.emplace_back(name, file.load(name));
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(file.load("rng.torch_cpu"));
  return state;
}

}  // namespace loom
