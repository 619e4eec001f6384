#include "runtime/core/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "runtime/core/error.h"

namespace loom {
namespace {

// A header larger than this is a corrupt length field, not a real header (the format's own reader
// uses the same 100 MB bound).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const std::vector<std::pair<std::string, torch::ScalarType>>& dtype_names() {
  static const std::vector<std::pair<std::string, torch::ScalarType>> names = {
      {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
      {"BF16", torch::kBFloat16}, {"I64", torch::kInt64}, {"I32", torch::kInt32},
      {"I16", torch::kInt16}, {"I8", torch::kInt8}, {"U8", torch::kUInt8}, {"BOOL", torch::kBool}};
  return names;
}

std::string dtype_name(torch::ScalarType t) {
  for (const auto& [name, type] : dtype_names())
    if (type == t) return name;
  fail(std::string("safetensors cannot store dtype ") + c10::toString(t));
}

torch::ScalarType dtype_from_name(const std::string& name, const std::string& where) {
  for (const auto& [n, type] : dtype_names())
    if (n == name) return type;
  fail(where + ": unknown dtype '" + name + "'");
}

void put_u64_le(std::ofstream& out, uint64_t v) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(v >> (8 * i));
  out.write(reinterpret_cast<const char*>(bytes), 8);
}

uint64_t get_u64_le(const unsigned char* bytes) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | bytes[i];
  return v;
}

}  // namespace

uint64_t TensorEntry::bytes() const {
  uint64_t n = c10::elementSize(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

void write_safetensors(const std::string& path, const std::vector<TensorEntry>& entries,
                       const std::function<torch::Tensor(size_t)>& produce,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& e : entries) {
    header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes()}}};
    offset += e.bytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    check(out.good(), "cannot write '" + tmp + "': check that the folder exists and is writable");
    put_u64_le(out, text.size());
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (size_t i = 0; i < entries.size(); ++i) {
      const torch::Tensor cpu = produce(i).detach().to(torch::kCPU).contiguous();
      check(cpu.scalar_type() == entries[i].dtype && cpu.sizes().vec() == entries[i].shape,
            "safetensors writer: tensor '" + entries[i].name + "' does not match its declared dtype and shape");
      out.write(static_cast<const char*>(cpu.data_ptr()), static_cast<std::streamsize>(cpu.nbytes()));
    }
    out.flush();
    check(out.good(), "writing '" + tmp + "' failed (disk full?)");
  }
  std::filesystem::rename(tmp, path);
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorEntry> entries;
  for (const auto& [name, t] : tensors) entries.push_back({name, t.scalar_type(), t.sizes().vec()});
  write_safetensors(path, entries, [&](size_t i) { return tensors[i].second; }, metadata);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open safetensors file '" + path + "'");
  const uint64_t file_size = std::filesystem::file_size(path);
  const std::string bad = "corrupt safetensors file '" + path + "': ";
  check(file_size >= 8, bad + "shorter than its 8-byte header length");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  const uint64_t header_len = get_u64_le(len_bytes);
  check(header_len <= kMaxHeaderBytes, bad + "header length " + std::to_string(header_len) + " is implausible");
  check(8 + header_len <= file_size, bad + "header runs past the end of the file (truncated?)");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  data_start_ = 8 + header_len;
  const uint64_t data_size = file_size - data_start_;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(bad + "header is not valid JSON (" + e.what() + ")");
  }
  check(header.is_object(), bad + "header is not a JSON object");

  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      check(entry.is_object(), bad + "__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        check(v.is_string(), bad + "__metadata__ values must be strings");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = bad + "tensor '" + name + "'";
    check(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
              entry.contains("data_offsets"),
          where + " lacks dtype, shape or data_offsets");
    check(entry["dtype"].is_string(), where + ": dtype is not a string");
    Info info;
    info.dtype = dtype_from_name(entry["dtype"].get<std::string>(), where);
    check(entry["shape"].is_array(), where + ": shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      check(d.is_number_unsigned(), where + ": shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      check(dim == 0 || numel <= (uint64_t{1} << 62) / dim, where + ": shape is implausibly large");
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = entry["data_offsets"];
    check(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
          where + ": data_offsets must be two non-negative integers");
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    check(info.begin <= info.end && info.end <= data_size,
          where + ": data_offsets lie outside the file (truncated?)");
    check(info.end - info.begin == numel * c10::elementSize(info.dtype),
          where + ": byte count does not match its shape and dtype");
    spans.emplace_back(info.begin, info.end);
    infos_.emplace(name, std::move(info));
  }
  std::sort(spans.begin(), spans.end());
  uint64_t expected = 0;
  for (const auto& [b, e] : spans) {
    check(b == expected, bad + "tensor data is not contiguous (overlap or gap at byte " + std::to_string(b) + ")");
    expected = e;
  }
  check(expected == data_size, bad + "the data section has " + std::to_string(data_size - expected) +
                                   " trailing bytes that no tensor owns");
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> order;  // empty tensors sort before their neighbour
  for (const auto& [name, info] : infos_) order.emplace_back(info.begin, info.end, name);
  std::sort(order.begin(), order.end());
  std::vector<std::string> out;
  for (auto& [b, e, name] : order) out.push_back(name);
  return out;
}

const SafetensorsFile::Info& SafetensorsFile::info(const std::string& name) const {
  auto it = infos_.find(name);
  check(it != infos_.end(), "'" + path_ + "' has no tensor named '" + name + "'");
  return it->second;
}

torch::Tensor SafetensorsFile::load(const std::string& name) const {
  const Info& i = info(name);
  return read(name, i.shape, i.begin, i.end - i.begin);
}

torch::Tensor SafetensorsFile::load_range(const std::string& name, int64_t begin, int64_t count) const {
  const Info& i = info(name);
  const int64_t numel = c10::multiply_integers(i.shape);
  check(begin >= 0 && count >= 0 && begin + count <= numel,
        "elements [" + std::to_string(begin) + ", " + std::to_string(begin + count) + ") are outside tensor '" + name +
            "' of '" + path_ + "', which has " + std::to_string(numel));
  const uint64_t element = c10::elementSize(i.dtype);
  return read(name, {count}, i.begin + static_cast<uint64_t>(begin) * element, static_cast<uint64_t>(count) * element);
}

torch::Tensor SafetensorsFile::read(const std::string& name, const std::vector<int64_t>& shape, uint64_t offset,
                                    uint64_t bytes) const {
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(info(name).dtype));
  std::ifstream in(path_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(data_start_ + offset));
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
  check(in.good(), "reading tensor '" + name + "' from '" + path_ + "' failed (file changed while reading?)");
  return t;
}

}  // namespace loom
