// Which of ATen's fused attention kernels this LibTorch offers Loom, decided from its version:
// the C++ signatures flash_block.cpp calls (9-tuple forward, scale argument, uint64 RNG state) are
// those of LibTorch 2.3 and later; cuDNN's entry point, with its attention bias argument, and SDPA's
// switch for it are 2.5 and later; FlashAttention-2's sliding window through the raw entry points
// was checked on 2.11 and needs 2.6. Each macro is 1 or 0.
#pragma once
#include <torch/version.h>

#define LOOM_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

#define LOOM_ATEN_FLASH LOOM_TORCH_AT_LEAST(2, 3)
#define LOOM_ATEN_CUDNN LOOM_TORCH_AT_LEAST(2, 5)
#define LOOM_ATEN_FLASH_WINDOW LOOM_TORCH_AT_LEAST(2, 6)
