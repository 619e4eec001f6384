// Loom's one error type. Every message says what was wrong and what to do about it; the `loom`
// executable prints it and exits non-zero, so user mistakes never surface as stack traces.
#pragma once
#include <stdexcept>
#include <string>

namespace loom {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(const std::string& message) { throw Error(message); }

inline void check(bool ok, const std::string& message) {
  if (!ok) fail(message);
}

}  // namespace loom
