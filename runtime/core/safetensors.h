// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON header
// mapping each tensor name to {dtype, shape, data_offsets}, then the packed tensor bytes.
// Loom uses it for checkpoints and for the Hugging Face export. The reader trusts nothing in the file:
// every length, offset, dtype and shape is checked before a byte of data is touched.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "runtime/core/named_tensors.h"

namespace loom {

// Writes `tensors` (any device, contiguous or not) to `path` through a temporary name and a rename,
// one tensor at a time, so a partially written file never carries the final name.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// One tensor of a file written by streaming: what the header needs before any data is produced.
struct TensorEntry {
  std::string name;
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t bytes() const;
};

// The same, asking `produce(i)` for tensor i only when its bytes are due, so a model larger than
// the memory to spare streams through (the exports read one stored tensor at a time).
void write_safetensors(const std::string& path, const std::vector<TensorEntry>& entries,
                       const std::function<torch::Tensor(size_t)>& produce,
                       const std::map<std::string, std::string>& metadata = {});

class SafetensorsFile {
 public:
  struct Info {
    torch::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // offsets into the data section
    uint64_t end = 0;
  };

  explicit SafetensorsFile(const std::string& path);  // validates the whole header

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // in file order
  bool contains(const std::string& name) const { return infos_.count(name) > 0; }
  const Info& info(const std::string& name) const;
  torch::Tensor load(const std::string& name) const;  // a fresh CPU tensor
  // Elements [begin, begin + count) of the tensor's row-major flattening, reading only their bytes.
  torch::Tensor load_range(const std::string& name, int64_t begin, int64_t count) const;

 private:
  torch::Tensor read(const std::string& name, const std::vector<int64_t>& shape, uint64_t offset, uint64_t bytes) const;

  std::string path_;
  uint64_t data_start_ = 0;
  std::map<std::string, Info> infos_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace loom
