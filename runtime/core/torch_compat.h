// The one place for code that differs between LibTorch versions (Debian's 1.13 CPU build and the
// 2.x builds that ship inside pip's torch, CUDA included).
#pragma once
#include <torch/version.h>

#define LOOM_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// ATen's fused attention kernels (flash / memory-efficient) became callable ops in 2.0.
#define LOOM_TORCH_HAS_SDPA LOOM_TORCH_AT_LEAST(2, 0)
