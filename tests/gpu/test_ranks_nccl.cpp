// Ranks over NCCL, one CUDA device each, rank r on device r mod (devices). NCCL refuses two ranks of
// one host on one device; ranks that each claim a host of their own (NCCL_HOSTID set per rank, as
// scripts/gpu-check.sh does) may share one, talking over NCCL's socket transport, which is how the
// multi-rank GPU path is checked on a machine with a single GPU.
#include <cstdlib>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/comm/nccl_communicator.h"
#include "tests/mpi/test_ranks.h"

namespace loom::test {

TestRanks test_ranks() {
  TestRanks r;
  r.rank = mpi_world_rank();
  r.size = mpi_world_size();
  if (!torch::cuda::is_available()) {
    r.skip = "needs a CUDA build of LibTorch and a GPU";
    return r;
  }
  const int devices = static_cast<int>(torch::cuda::device_count());
  if (r.size > devices && std::getenv("NCCL_HOSTID") == nullptr) {
    r.skip = "needs one GPU per rank (" + std::to_string(r.size) + " ranks, " + std::to_string(devices) +
             " GPUs), or NCCL_HOSTID set differently on each rank to share them";
    return r;
  }
  const int device = r.rank % devices;
  r.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device));
  r.group = [rank = r.rank, device](const std::string& name) {
    return nccl_communicator(mpi_world(60)->split(0, rank, name), device, 60);
  };
  return r;
}

}  // namespace loom::test
