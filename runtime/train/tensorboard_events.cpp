#include "runtime/train/tensorboard_events.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "runtime/core/error.h"

namespace loom {
namespace {

std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;  // the reflected Castagnoli polynomial
    table[i] = c;
  }
  return table;
}

// TFRecord stores CRCs rotated and offset, so a CRC of data that holds CRCs stays well distributed.
uint32_t masked_crc(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// Protocol buffer wire format: a field's key is (number << 3 | wire type); 0 varint, 1 fixed 64-bit,
// 2 length-delimited, 5 fixed 32-bit; little-endian fixed values.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

template <class T>
void fixed(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // x86 and ARM Linux are little-endian, as the format is
  out.append(bytes, sizeof(T));
}

void bytes_field(std::string& out, int number, const std::string& value) {
  varint(out, static_cast<uint64_t>(number) << 3 | 2);
  varint(out, value.size());
  out += value;
}

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
std::string event_header(int64_t step) {
  std::string e;
  varint(e, 1 << 3 | 1);
  fixed(e, wall_time());
  varint(e, 2 << 3 | 0);
  varint(e, static_cast<uint64_t>(step));
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = crc32c_table();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

TensorBoardEvents::TensorBoardEvents(const std::string& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(wall_time())) + "." + host;
  out_.open(path_, std::ios::binary | std::ios::app);
  check(out_.good(), "cannot write the TensorBoard events file '" + path_ + "'");
  std::string first = event_header(0);
  bytes_field(first, 3, "brain.Event:2");
  write_record(first);
}

// Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
void TensorBoardEvents::scalar(const std::string& tag, double value, int64_t step) {
  std::string v;
  bytes_field(v, 1, tag);
  varint(v, 2 << 3 | 5);
  fixed(v, static_cast<float>(value));
  std::string summary;
  bytes_field(summary, 1, v);
  std::string e = event_header(step);
  bytes_field(e, 5, summary);
  write_record(e);
}

void TensorBoardEvents::write_record(const std::string& event) {
  const uint64_t length = event.size();
  std::string frame;
  fixed(frame, length);
  fixed(frame, masked_crc(&length, sizeof length));
  frame += event;
  fixed(frame, masked_crc(event.data(), event.size()));
  out_.write(frame.data(), static_cast<std::streamsize>(frame.size()));
}

}  // namespace loom
