// Whole small text files (configs, checkpoint state, export metadata) read and written at once.
#pragma once
#include <string>

namespace loom {

// The file's contents; a missing or unreadable file is a loom::Error naming `what` and the path.
std::string read_text_file(const std::string& path, const std::string& what = "file");

// Replaces the file's contents; a failed write (disk full) is a loom::Error.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace loom
