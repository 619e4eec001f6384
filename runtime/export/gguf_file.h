// The GGUF container (ggml's docs/gguf.md, version 3): magic "GGUF", version, tensor and key
// counts; typed key/value metadata; tensor infos (name, dims fastest-first, ggml type, offset);
// padding to the alignment; the tensor data, each tensor aligned.
//
// The writer streams tensor by tensor through a temporary name and a rename. The reader trusts
// nothing: every count, length, type code, dimension and offset is checked against the file before
// it is used, so a truncated or corrupt file is a clear error, never an out-of-bounds read.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace loom {

// The metadata value types Loom writes and reads (arrays of strings, integers and floats included).
using GgufValue = std::variant<uint32_t, int32_t, uint64_t, float, bool, std::string, std::vector<std::string>,
                               std::vector<int32_t>, std::vector<float>>;

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // PyTorch order (slowest first); the file stores it reversed
  torch::ScalarType dtype;     // float32, float16 or bfloat16
  uint64_t offset = 0;         // into the data section
};

// Writes metadata and tensors; `produce(i)` is asked for tensor i when its bytes are due.
void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufTensorInfo>& tensors, const std::function<torch::Tensor(size_t)>& produce,
                uint32_t alignment = 32);

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // validates the whole header

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufValue& value(const std::string& key) const;
  torch::Tensor load(const std::string& name) const;  // PyTorch shape, a fresh CPU tensor

 private:
  std::string path_;
  uint64_t data_start_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace loom
