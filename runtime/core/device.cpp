#include "runtime/core/device.h"

#include <torch/cuda.h>

#include <cstdlib>

#include "runtime/core/error.h"

namespace loom {

int64_t launcher_local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* value = std::getenv(name)) return std::atoll(value);
  return 0;
}

c10::Device choose_device(const std::string& wanted, int64_t local_rank) {
  const int64_t gpus = static_cast<int64_t>(torch::cuda::device_count());
  if (wanted == "cpu" || (wanted == "auto" && gpus == 0)) return c10::Device(c10::kCPU);
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  check(gpus > 0, std::string("train.device = cuda, but no GPU is visible (CUDA_VISIBLE_DEVICES=") +
                      (visible ? visible : "unset") + ", LibTorch " + (torch::cuda::is_available() ? "with" : "without") +
                      " CUDA); use train.device: cpu or auto");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank % gpus));
}

}  // namespace loom
