#include "runtime/export/gguf_file.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/core/error.h"

namespace loom {
namespace {

constexpr uint32_t kVersion = 3;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

// ggml type codes and value type codes (ggml's gguf.h).
enum GgmlType : uint32_t { kF32 = 0, kF16 = 1, kBF16 = 30 };
enum ValueType : uint32_t { kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32v, kBool, kString, kArray, kU64, kI64, kF64 };

uint32_t ggml_type(torch::ScalarType t) {
  if (t == torch::kFloat32) return kF32;
  if (t == torch::kFloat16) return kF16;
  check(t == torch::kBFloat16, std::string("GGUF export supports F32, F16 and BF16, not ") + c10::toString(t));
  return kBF16;
}

uint64_t padded(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

uint64_t tensor_bytes(const GgufTensorInfo& t) {
  uint64_t n = c10::elementSize(t.dtype);
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

class Out {
 public:
  explicit Out(std::ofstream& out) : out_(out) {}
  template <class T>
  void pod(T v) {
    out_.write(reinterpret_cast<const char*>(&v), sizeof v);  // GGUF is little-endian, like every host Loom runs on
  }
  void text(const std::string& s) {
    pod<uint64_t>(s.size());
    out_.write(s.data(), static_cast<std::streamsize>(s.size()));
  }
  void value(const GgufValue& v) {
    std::visit([this](const auto& x) { typed(x); }, v);
  }

 private:
  void typed(uint32_t x) { pod<uint32_t>(kU32), pod(x); }
  void typed(int32_t x) { pod<uint32_t>(kI32), pod(x); }
  void typed(uint64_t x) { pod<uint32_t>(kU64), pod(x); }
  void typed(float x) { pod<uint32_t>(kF32v), pod(x); }
  void typed(bool x) { pod<uint32_t>(kBool), pod<uint8_t>(x ? 1 : 0); }
  void typed(const std::string& x) { pod<uint32_t>(kString), text(x); }
  void typed(const std::vector<std::string>& x) {
    pod<uint32_t>(kArray), pod<uint32_t>(kString), pod<uint64_t>(x.size());
    for (const auto& s : x) text(s);
  }
  void typed(const std::vector<int32_t>& x) {
    pod<uint32_t>(kArray), pod<uint32_t>(kI32), pod<uint64_t>(x.size());
    for (auto i : x) pod(i);
  }
  void typed(const std::vector<float>& x) {
    pod<uint32_t>(kArray), pod<uint32_t>(kF32v), pod<uint64_t>(x.size());
    for (auto f : x) pod(f);
  }
  std::ofstream& out_;
};

// Reads from a file of known size; every read is checked against what is left.
class In {
 public:
  In(const std::string& path, uint64_t size) : in_(path, std::ios::binary), size_(size), bad_("corrupt GGUF file '" + path + "': ") {
    check(in_.good(), "cannot open GGUF file '" + path + "'");
  }
  uint64_t position() const { return pos_; }
  const std::string& bad() const { return bad_; }
  void need(uint64_t n, const std::string& what) {
    check(n <= size_ - pos_, bad_ + what + " runs past the end of the file (truncated?)");
  }
  template <class T>
  T pod(const std::string& what) {
    need(sizeof(T), what);
    T v;
    in_.read(reinterpret_cast<char*>(&v), sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string text(const std::string& what) {
    const auto n = pod<uint64_t>(what + " length");
    need(n, what);
    std::string s(n, '\0');
    in_.read(s.data(), static_cast<std::streamsize>(n));
    pos_ += n;
    return s;
  }
  // Array lengths are bounded by the bytes left (every element takes at least one).
  uint64_t count(const std::string& what) {
    const auto n = pod<uint64_t>(what);
    check(n <= size_ - pos_, bad_ + what + " " + std::to_string(n) + " is larger than the file");
    return n;
  }
  GgufValue value(const std::string& key) {
    const auto type = pod<uint32_t>("type of " + key);
    switch (type) {
      case kU32: return pod<uint32_t>(key);
      case kI32: return pod<int32_t>(key);
      case kU64: return pod<uint64_t>(key);
      case kF32v: return pod<float>(key);
      case kBool: {
        const auto b = pod<uint8_t>(key);
        check(b <= 1, bad_ + key + ": a bool must be 0 or 1, not " + std::to_string(b));
        return b == 1;
      }
      case kString: return text(key);
      case kArray: return array(key);
      default: fail(bad_ + key + ": value type " + std::to_string(type) + " is not one Loom reads");
    }
  }
  void skip_to(uint64_t position) {
    check(position <= size_, bad_ + "padding runs past the end of the file");
    in_.seekg(static_cast<std::streamoff>(position));
    pos_ = position;
  }

 private:
  GgufValue array(const std::string& key) {
    const auto type = pod<uint32_t>("element type of " + key);
    const auto n = count("length of " + key);
    if (type == kString) {
      std::vector<std::string> v;
      for (uint64_t i = 0; i < n; ++i) v.push_back(text(key + "[" + std::to_string(i) + "]"));
      return v;
    }
    if (type == kI32) {
      need(4 * n, key);
      std::vector<int32_t> v(n);
      for (auto& x : v) x = pod<int32_t>(key);
      return v;
    }
    check(type == kF32v, bad_ + key + ": arrays of type " + std::to_string(type) + " are not ones Loom reads");
    need(4 * n, key);
    std::vector<float> v(n);
    for (auto& x : v) x = pod<float>(key);
    return v;
  }

  std::ifstream in_;
  uint64_t size_, pos_ = 0;
  std::string bad_;
};

}  // namespace

void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufTensorInfo>& tensors, const std::function<torch::Tensor(size_t)>& produce,
                uint32_t alignment) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    check(file.good(), "cannot write '" + tmp + "': check that the folder exists and is writable");
    Out out(file);
    file.write("GGUF", 4);
    out.pod(kVersion);
    out.pod<uint64_t>(tensors.size());
    out.pod<uint64_t>(metadata.size() + (alignment != 32 ? 1 : 0));
    for (const auto& [key, value] : metadata) out.text(key), out.value(value);
    if (alignment != 32) out.text("general.alignment"), out.value(alignment);
    uint64_t offset = 0;
    for (const auto& t : tensors) {
      out.text(t.name);
      out.pod<uint32_t>(t.shape.size());
      for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) out.pod<uint64_t>(*d);
      out.pod(ggml_type(t.dtype));
      out.pod(offset);
      offset = padded(offset + tensor_bytes(t), alignment);
    }
    const auto zeros = std::string(alignment, '\0');
    auto pad = [&] { file.write(zeros.data(), static_cast<std::streamsize>(padded(file.tellp(), alignment) - file.tellp())); };
    pad();
    for (size_t i = 0; i < tensors.size(); ++i) {
      const torch::Tensor cpu = produce(i).detach().to(torch::kCPU).contiguous();
      check(cpu.scalar_type() == tensors[i].dtype && cpu.sizes().vec() == tensors[i].shape,
            "GGUF writer: tensor '" + tensors[i].name + "' does not match its declared dtype and shape");
      file.write(static_cast<const char*>(cpu.data_ptr()), static_cast<std::streamsize>(cpu.nbytes()));
      pad();
    }
    file.flush();
    check(file.good(), "writing '" + tmp + "' failed (disk full?)");
  }
  std::filesystem::rename(tmp, path);
}

GgufFile::GgufFile(const std::string& path) : path_(path) {
  check(std::filesystem::exists(path), "GGUF file '" + path + "' does not exist");
  const uint64_t size = std::filesystem::file_size(path);
  In in(path, size);
  const auto& bad = in.bad();
  const auto magic = in.pod<uint32_t>("magic");
  check(std::memcmp(&magic, "GGUF", 4) == 0, bad + "it does not start with the magic bytes 'GGUF'");
  const auto version = in.pod<uint32_t>("version");
  check(version == 2 || version == 3, bad + "version " + std::to_string(version) + " (Loom reads versions 2 and 3)");
  const auto n_tensors = in.count("tensor count");
  const auto n_keys = in.count("metadata count");
  for (uint64_t i = 0; i < n_keys; ++i) {
    const std::string key = in.text("metadata key");
    check(!metadata_.count(key), bad + "metadata key '" + key + "' appears twice");
    metadata_.emplace(key, in.value(key));
  }
  uint32_t alignment = 32;
  if (auto it = metadata_.find("general.alignment"); it != metadata_.end()) {
    check(std::holds_alternative<uint32_t>(it->second), bad + "general.alignment must be a uint32");
    alignment = std::get<uint32_t>(it->second);
    check(alignment > 0 && (alignment & (alignment - 1)) == 0, bad + "general.alignment must be a power of two");
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = in.text("tensor name");
    const std::string where = bad + "tensor '" + t.name + "'";
    const auto dims = in.pod<uint32_t>("dimension count of " + t.name);
    check(dims >= 1 && dims <= kMaxDims, where + " has " + std::to_string(dims) + " dimensions (1 to 4 allowed)");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < dims; ++d) {
      const auto n = in.pod<uint64_t>("dimensions of " + t.name);
      check(n > 0 && numel <= size / n, where + " has an implausible dimension " + std::to_string(n));
      numel *= n;
      t.shape.insert(t.shape.begin(), static_cast<int64_t>(n));
    }
    const auto type = in.pod<uint32_t>("type of " + t.name);
    check(type == kF32 || type == kF16 || type == kBF16,
          where + " has ggml type " + std::to_string(type) + "; Loom reads F32, F16 and BF16 only");
    t.dtype = type == kF32 ? torch::kFloat32 : type == kF16 ? torch::kFloat16 : torch::kBFloat16;
    t.offset = in.pod<uint64_t>("offset of " + t.name);
    check(t.offset % alignment == 0, where + " is not aligned to " + std::to_string(alignment) + " bytes");
    tensors_.push_back(t);
  }
  data_start_ = padded(in.position(), alignment);
  check(data_start_ <= size, bad + "the header runs past the end of the file (truncated?)");
  // Tensors must lie inside the file and not overlap one another.
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& t : tensors_) {
    const uint64_t bytes = tensor_bytes(t);
    check(t.offset <= size - data_start_ && bytes <= size - data_start_ - t.offset,
          bad + "tensor '" + t.name + "' lies outside the file (truncated?)");
    spans.emplace_back(t.offset, t.offset + bytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    check(spans[i].first >= spans[i - 1].second, bad + "tensor data overlap at offset " + std::to_string(spans[i].first));
}

const GgufValue& GgufFile::value(const std::string& key) const {
  auto it = metadata_.find(key);
  check(it != metadata_.end(), "GGUF file '" + path_ + "' has no key '" + key + "'");
  return it->second;
}

torch::Tensor GgufFile::load(const std::string& name) const {
  for (const auto& t : tensors_) {
    if (t.name != name) continue;
    torch::Tensor out = torch::empty(t.shape, torch::TensorOptions().dtype(t.dtype));
    std::ifstream in(path_, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(data_start_ + t.offset));
    in.read(static_cast<char*>(out.data_ptr()), static_cast<std::streamsize>(out.nbytes()));
    check(in.good(), "reading tensor '" + name + "' from '" + path_ + "' failed (file changed while reading?)");
    return out;
  }
  fail("GGUF file '" + path_ + "' has no tensor '" + name + "'");
}

}  // namespace loom
