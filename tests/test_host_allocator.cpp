#include <gtest/gtest.h>

#include <cstdlib>

#include "runtime/core/host_allocator.h"

#if defined(__GLIBC__)
#include <malloc.h>

namespace {

// Bytes glibc holds in mmapped blocks while one block of `bytes` is allocated.
size_t mapped_bytes_while_holding(size_t bytes) {
  void* volatile block = std::malloc(bytes);  // volatile: the compiler may not elide the pair
  const size_t mapped = mallinfo2().hblkhd;
  std::free(block);
  return mapped;
}

TEST(HostAllocator, LargeBlocksComeFromTheHeapOnceApplied) {
  constexpr size_t kBlock = size_t{64} << 20;  // above glibc's largest dynamic mmap threshold (32 MiB)
  const size_t before = mallinfo2().hblkhd;
  ASSERT_GE(mapped_bytes_while_holding(kBlock), before + kBlock) << "glibc's default no longer maps a 64 MiB block";
  ASSERT_TRUE(loom::keep_large_host_blocks());
  EXPECT_LT(mapped_bytes_while_holding(kBlock), before + kBlock);
}

TEST(HostAllocator, LeavesGlibcAloneWhenTheUserTunedIt) {
  setenv("MALLOC_TOP_PAD_", "0", 1);
  EXPECT_FALSE(loom::keep_large_host_blocks());
  unsetenv("MALLOC_TOP_PAD_");
}

}  // namespace
#endif
