// Deliberate faults for the tests that prove crash safety: LOOM_FAULT=<name>@<step> makes the named
// fault happen at that step. Known names: checkpoint-write (abort half-way through writing the
// checkpoint), nan-loss (the step's loss becomes NaN). Unset in normal runs.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <string>

namespace loom {

inline bool fault_requested(const std::string& name, int64_t step) {
  const char* spec = std::getenv("LOOM_FAULT");
  return spec && std::string(spec) == name + "@" + std::to_string(step);
}

}  // namespace loom
