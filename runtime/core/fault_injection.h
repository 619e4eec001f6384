// Deliberate faults for the tests that prove crash safety and failure handling:
// LOOM_FAULT=<name>@<step> makes the named fault happen at that step on every rank, and
// LOOM_FAULT=<name>@<step>:<rank> only on that world rank. Known names: checkpoint-write (abort
// half-way through writing the checkpoint), nan-loss (the step's loss becomes NaN), throw (the step
// throws an error), hang (the rank stops responding), kill (the rank SIGKILLs itself), signal (the rank
// receives SIGUSR1, as from a preemption notice). Unset in
// normal runs.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <string>

namespace loom {

inline bool fault_requested(const std::string& name, int64_t step, int rank = 0) {
  const char* spec = std::getenv("LOOM_FAULT");
  if (!spec) return false;
  const std::string at = name + "@" + std::to_string(step);
  return spec == at || spec == at + ":" + std::to_string(rank);
}

}  // namespace loom
