#pragma once

namespace loom {

// Keeps large freed host blocks inside glibc's heap for reuse instead of returning them to the
// kernel. By default glibc maps every block above 32 MiB with mmap and unmaps it on free, so a
// loop that allocates and frees such tensors pays the page faults of zeroing fresh pages each
// time: LaCT's chunk loop on 16K tokens spent more time in the kernel than computing (36 s vs
// 7 s for the same work). Leaves glibc alone when the user tuned it (MALLOC_*_ or GLIBC_TUNABLES)
// and is a no-op on other C libraries. Returns whether the setting was applied.
bool keep_large_host_blocks();

}  // namespace loom
