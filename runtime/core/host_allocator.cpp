#include "runtime/core/host_allocator.h"

#include <cstdlib>
#include <initializer_list>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace loom {

bool keep_large_host_blocks() {
#if defined(__GLIBC__)
  for (const char* knob : {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    if (std::getenv(knob)) return false;
  }
  // Blocks up to 1 GiB come from the heap, and up to 1 GiB of free memory at its top is kept:
  // the freed memory of one step is what the next step allocates again.
  constexpr int kOneGiB = 1 << 30;
  return mallopt(M_MMAP_THRESHOLD, kOneGiB) == 1 && mallopt(M_TRIM_THRESHOLD, kOneGiB) == 1;
#else
  return false;
#endif
}

}  // namespace loom
