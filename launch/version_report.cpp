// `loom --version`: Loom's libraries and the machine, the facts a result depends on. Regression
// runs record them beside their golden values and compare bit for bit only where they all agree.
#include <torch/torch.h>

#include <fstream>
#include <string>

#include "launch/commands.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/data/token_dataset.h"

namespace loom {
namespace {

// The processor's name and its widest vector extension, which picks the BLAS and oneDNN kernels
// (and so the rounding) a float computation gets.
std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, name = "unknown", vector = "no avx";
  auto value = [&] { return line.substr(line.find_first_not_of(' ', line.find(':') + 1)); };
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) name = value();
    if (line.rfind("flags", 0) != 0) continue;
    const std::string flags = " " + value() + " ";
    vector = flags.find(" avx512f ") != std::string::npos ? "avx512" : flags.find(" avx2 ") != std::string::npos ? "avx2" : vector;
    break;
  }
  return name + " (" + vector + ")";
}

std::string compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

}  // namespace

std::string version_report() {
  const auto gpus = torch::cuda::device_count();
  return "libtorch: " TORCH_VERSION "\n"
         "mpi: " + mpi_library_version() + "\n"
         "hdf5: " + hdf5_library_version() + "\n"
         "compiler: " + compiler() + "\n"
         "cpu: " + cpu_model() + "\n"
         "gpus: " + std::to_string(gpus);
}

}  // namespace loom
