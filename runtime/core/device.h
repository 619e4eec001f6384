// Which device a rank computes on (train.device). One rank per GPU: a rank takes the GPU of its
// local rank on the node (as the launcher numbers it: mpirun's OMPI_COMM_WORLD_LOCAL_RANK, MPICH's
// MPI_LOCALRANKID, srun's SLURM_LOCALID), modulo the GPUs it can see (CUDA_VISIBLE_DEVICES
// respected, since LibTorch counts only those).
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace loom {

// This process's rank among the ranks of its node, from the launcher's environment; 0 when started
// alone.
int64_t launcher_local_rank();

// `wanted` is train.device: auto (a GPU where one is visible, else the CPU), cpu or cuda (an error
// saying why when no GPU is visible).
c10::Device choose_device(const std::string& wanted, int64_t local_rank);

}  // namespace loom
