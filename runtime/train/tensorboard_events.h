// TensorBoard's event files, the format torch.utils.tensorboard and most trainers write, so a run
// can be watched with `tensorboard --logdir RUN/tensorboard` beside its metrics.jsonl.
//
// A file is a sequence of TFRecord frames (length, masked CRC-32C of the length, data, masked
// CRC-32C of the data); each frame holds one `Event` protocol buffer: the first names the file
// version, the others carry scalar summaries (tag, value) at a step. Only the fields a scalar needs
// are written, encoded by hand: Loom does not depend on protobuf.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>

namespace loom {

// CRC-32C (Castagnoli), the checksum TFRecord frames carry.
uint32_t crc32c(const void* data, size_t size);

class TensorBoardEvents {
 public:
  // Creates `dir` and a new events.out.tfevents.<seconds>.<host> file in it.
  explicit TensorBoardEvents(const std::string& dir);
  void scalar(const std::string& tag, double value, int64_t step);
  void flush() { out_.flush(); }
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

}  // namespace loom
