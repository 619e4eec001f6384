// TensorBoard event files: the checksum against its published check value, and the frames read
// back as a reader does (the tensorboard package's own reader runs in the interop label).
#include <cstring>
#include <fstream>
#include <iterator>

#include "runtime/train/tensorboard_events.h"
#include "tests/test_util.h"

namespace loom {
namespace {

TEST(TensorBoardEvents, Crc32cMatchesItsCheckValue) {
  // The check value of CRC-32C (RFC 3720, appendix B.4; the CRC catalogue's "check").
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

uint32_t unmask(uint32_t masked) {
  const uint32_t rotated = masked - 0xa282ead8u;
  return (rotated << 15) | (rotated >> 17);
}

// Every frame's length and data match their checksums, and the scalars' tags are inside.
TEST(TensorBoardEvents, FramesCarryValidChecksumsAndTheTags) {
  test::ScratchDir dir;
  std::string path;
  {
    TensorBoardEvents events(dir.path("tb"));
    events.scalar("train/loss", 2.5, 1);
    events.scalar("eval/accuracy", 0.75, 2);
    path = events.path();
  }
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::string> events;
  size_t at = 0;
  while (at < bytes.size()) {
    ASSERT_LE(at + 12, bytes.size());
    uint64_t length = 0;
    uint32_t length_crc = 0, data_crc = 0;
    std::memcpy(&length, bytes.data() + at, 8);
    std::memcpy(&length_crc, bytes.data() + at + 8, 4);
    EXPECT_EQ(unmask(length_crc), crc32c(bytes.data() + at, 8));
    ASSERT_LE(at + 12 + length + 4, bytes.size());
    events.push_back(bytes.substr(at + 12, length));
    std::memcpy(&data_crc, bytes.data() + at + 12 + length, 4);
    EXPECT_EQ(unmask(data_crc), crc32c(events.back().data(), length));
    at += 12 + length + 4;
  }
  ASSERT_EQ(events.size(), 3u);
  EXPECT_NE(events[0].find("brain.Event:2"), std::string::npos);
  EXPECT_NE(events[1].find("train/loss"), std::string::npos);
  const float accuracy = 0.75f;
  EXPECT_NE(events[2].find(std::string("eval/accuracy") + '\x15' + std::string(reinterpret_cast<const char*>(&accuracy), 4)),
            std::string::npos)
      << "the value follows its tag as field 2, a 32-bit float";
}

}  // namespace
}  // namespace loom
