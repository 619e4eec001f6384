// The MPI backend of Communicator, for CPU tensors, and the process-wide MPI runtime.
//
// MPI is initialised on first use with MPI_THREAD_MULTIPLE. Each communicator has a thread that runs
// its operations as blocking MPI calls in the order the caller issued them, so transfers advance
// while the caller computes (Open MPI makes no progress outside MPI calls) and collectives use
// MPI's tuned algorithms.
#pragma once
#include <memory>
#include <string>

#include "parallel/comm/communicator.h"

namespace loom {

// All ranks of the job (one rank when the process was not started by mpirun or srun). Operations
// that do not finish within `timeout_s` seconds throw.
std::unique_ptr<Communicator> mpi_world(double timeout_s);

// This process's rank and the job's size in MPI_COMM_WORLD; 0 and 1 before MPI is initialised.
int mpi_world_rank();
int mpi_world_size();

// The MPI library's own name and version (the first line of MPI_Get_library_version).
std::string mpi_library_version();

// Ends every rank of the job after printing `message` on stderr (MPI_Abort), so that one failing
// rank cannot leave the others waiting for it.
[[noreturn]] void abort_job(const std::string& message);

}  // namespace loom
