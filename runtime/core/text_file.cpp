#include "runtime/core/text_file.h"

#include <fstream>
#include <sstream>

#include "runtime/core/error.h"

namespace loom {

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  check(in.good(), "cannot read " + what + " '" + path + "': check the path");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.flush();
  check(out.good(), "writing '" + path + "' failed (disk full?)");
}

}  // namespace loom
