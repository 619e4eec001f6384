// Precompiled for every LibTorch target (see loom_library in the root CMakeLists.txt).
#pragma once
#include <torch/torch.h>
