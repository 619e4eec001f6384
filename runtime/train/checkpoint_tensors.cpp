#include "runtime/train/checkpoint_tensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "runtime/core/error.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPiecesKey = "loom_pieces";

int64_t numel_of(const std::vector<int64_t>& shape) { return c10::multiply_integers(shape); }

}  // namespace

std::string checkpoint_file_name(const std::string& kind, int64_t rank, int64_t shares) {
  if (shares == 1) return kind + ".safetensors";
  char name[64];
  std::snprintf(name, sizeof name, "-%05ld-of-%05ld.safetensors", rank + 1, shares);
  return kind + name;
}

void write_checkpoint_file(const std::string& path, const TensorPieces& pieces) {
  NamedTensors tensors;
  nlohmann::json described = nlohmann::json::object();
  for (const TensorPiece& p : pieces) {
    if (p.begin == 0 && p.values.numel() == numel_of(p.shape)) {
      tensors.emplace_back(p.name, p.values.reshape(p.shape));
      continue;
    }
    const std::string key = p.name + "@" + std::to_string(p.begin);
    tensors.emplace_back(key, p.values.reshape(-1));
    described[key] = {{"tensor", p.name}, {"begin", p.begin}, {"shape", p.shape}};
  }
  write_safetensors(path, tensors, {{"format", "pt"}, {kPiecesKey, described.dump()}});
}

CheckpointTensors::CheckpointTensors(const std::string& dir, const std::string& kind, int64_t shares)
    : dir_(dir), kind_(kind) {
  for (int64_t r = 0; r < shares; ++r) {
    const fs::path path = fs::path(dir) / checkpoint_file_name(kind, r, shares);
    check(fs::exists(path), "checkpoint '" + dir + "' is incomplete: it was written by " + std::to_string(shares) +
                                " ranks and '" + path.filename().string() + "' is missing");
    add_file(path.string());
  }
  for (auto& [name, stored] : tensors_) check_covered(name, stored);
}

void CheckpointTensors::add_file(const std::string& path) {
  files_.emplace_back(path);
  const SafetensorsFile& file = files_.back();
  nlohmann::json described = nlohmann::json::object();
  if (file.metadata().count(kPiecesKey)) {
    described = nlohmann::json::parse(file.metadata().at(kPiecesKey), nullptr, /*allow_exceptions=*/false);
    check(described.is_object(), "'" + path + "': its " + kPiecesKey + " metadata is not a JSON object");
  }
  for (const std::string& key : file.names()) {
    const auto& info = file.info(key);
    std::string name = key;
    std::vector<int64_t> shape = info.shape;
    int64_t begin = 0;
    if (described.contains(key)) {
      try {
        const auto& d = described.at(key);
        name = d.at("tensor").get<std::string>();
        begin = d.at("begin").get<int64_t>();
        shape = d.at("shape").get<std::vector<int64_t>>();
      } catch (const nlohmann::json::exception&) {
        fail("'" + path + "': the description of piece '" + key + "' lacks its tensor, begin or shape; the checkpoint is damaged");
      }
      check(begin >= 0 && begin + numel_of(info.shape) <= numel_of(shape),
            "'" + path + "': piece '" + key + "' reaches outside its tensor; the checkpoint is damaged");
    }
    auto [it, fresh] = tensors_.try_emplace(name, Stored{shape, info.dtype, {}});
    if (fresh) names_.push_back(name);
    check(it->second.shape == shape && it->second.dtype == info.dtype,
          "checkpoint '" + dir_ + "': the pieces of '" + name + "' disagree on its shape or dtype");
    it->second.pieces.push_back({files_.size() - 1, key, begin, numel_of(info.shape)});
  }
}

void CheckpointTensors::check_covered(const std::string& name, Stored& stored) const {
  auto& pieces = stored.pieces;
  std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
  int64_t next = 0;
  for (const Piece& p : pieces) {
    check(p.begin == next, "checkpoint '" + dir_ + "': the " + kind_ + " tensor '" + name + "' is stored " +
                               (p.begin > next ? "with elements [" + std::to_string(next) + ", " + std::to_string(p.begin) + ") missing"
                                               : "twice from element " + std::to_string(p.begin)) +
                               "; the checkpoint is damaged");
    next += p.count;
  }
  check(next == numel_of(stored.shape), "checkpoint '" + dir_ + "': the " + kind_ + " tensor '" + name + "' lacks its elements from " +
                                            std::to_string(next) + " on; the checkpoint is damaged");
}

const CheckpointTensors::Stored& CheckpointTensors::tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  check(it != tensors_.end(), "checkpoint '" + dir_ + "' has no " + kind_ + " tensor '" + name + "'");
  return it->second;
}

void CheckpointTensors::check_shape(const std::string& name, const std::vector<int64_t>& model_shape) const {
  check(shape(name) == model_shape, "checkpoint tensor '" + name + "' has shape " + c10::str(c10::IntArrayRef(shape(name))) +
                                        " but this model's is " + c10::str(c10::IntArrayRef(model_shape)) +
                                        ": the checkpoint is from another model shape (check the model: section)");
}

torch::Tensor CheckpointTensors::load(const std::string& name) const {
  const Stored& stored = tensor(name);
  if (stored.pieces.size() == 1) return files_[stored.pieces[0].file].load(stored.pieces[0].key).reshape(stored.shape);
  return load_range(name, 0, numel_of(stored.shape)).reshape(stored.shape);
}

torch::Tensor CheckpointTensors::load_range(const std::string& name, int64_t begin, int64_t count) const {
  const Stored& stored = tensor(name);
  check(begin >= 0 && count >= 0 && begin + count <= numel_of(stored.shape),
        "elements [" + std::to_string(begin) + ", " + std::to_string(begin + count) + ") are outside '" + name + "'");
  torch::Tensor out = torch::empty({count}, torch::TensorOptions().dtype(stored.dtype));
  for (const Piece& p : stored.pieces) {
    const int64_t from = std::max(begin, p.begin), to = std::min(begin + count, p.begin + p.count);
    if (from < to) out.narrow(0, from - begin, to - from).copy_(files_[p.file].load_range(p.key, from - p.begin, to - from));
  }
  return out;
}

}  // namespace loom
