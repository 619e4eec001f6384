// The tensors of one kind ("model" or "optimizer") of a checkpoint, whole, whatever layout wrote
// them. A checkpoint written by n ranks holds n files of each kind (model.safetensors alone when
// n = 1, else model-00001-of-0000n.safetensors, ...); each file holds whole tensors under their
// names and pieces of tensors (ZeRO's parts: flat ranges) under "name@begin", the pieces described
// in the file's metadata (`loom_pieces`). The reader opens every file's header, checks that the
// pieces of each tensor cover it exactly once, and reads a tensor whole or any range of it, touching
// only the bytes of that range.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/core/named_tensors.h"
#include "runtime/core/safetensors.h"

namespace loom {

// The file rank `rank` of `shares` writers writes for `kind`.
std::string checkpoint_file_name(const std::string& kind, int64_t rank, int64_t shares);

// Writes `pieces` as one checkpoint file at `path` (through a temporary name, as every
// safetensors file is written).
void write_checkpoint_file(const std::string& path, const TensorPieces& pieces);

class CheckpointTensors {
 public:
  // Opens the `shares` files of `kind` in checkpoint folder `dir`; a missing file, a gap or an overlap
  // is an error naming it.
  CheckpointTensors(const std::string& dir, const std::string& kind, int64_t shares);

  std::vector<std::string> names() const { return names_; }  // in the order the writers wrote them
  bool contains(const std::string& name) const { return tensors_.count(name) > 0; }
  const std::vector<int64_t>& shape(const std::string& name) const { return tensor(name).shape; }
  // A stored shape other than the one this model gives the tensor is an error that says so.
  void check_shape(const std::string& name, const std::vector<int64_t>& model_shape) const;
  torch::ScalarType dtype(const std::string& name) const { return tensor(name).dtype; }
  torch::Tensor load(const std::string& name) const;  // whole, a fresh CPU tensor
  // Elements [begin, begin + count) of the tensor's row-major flattening, as a 1-D CPU tensor.
  torch::Tensor load_range(const std::string& name, int64_t begin, int64_t count) const;

 private:
  struct Piece {
    size_t file;
    std::string key;
    int64_t begin, count;
  };
  struct Stored {
    std::vector<int64_t> shape;
    torch::ScalarType dtype;
    std::vector<Piece> pieces;  // sorted by begin, covering the tensor
  };
  const Stored& tensor(const std::string& name) const;
  void add_file(const std::string& path);
  void check_covered(const std::string& name, Stored& stored) const;

  std::string dir_, kind_;
  std::vector<SafetensorsFile> files_;
  std::vector<std::string> names_;
  std::map<std::string, Stored> tensors_;
};

}  // namespace loom
