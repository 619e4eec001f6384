// The NCCL backend of Communicator, for CUDA tensors. Compiled where the CUDA toolkit and NCCL are
// found (LOOM_HAVE_NCCL); it needs no CUDA LibTorch to compile, since it works on the tensors' raw
// device pointers and its own CUDA stream.
//
// Each group is one NCCL communicator, bootstrapped over an MPI communicator of the same ranks:
// rank 0 makes the unique id and MPI broadcasts it. Operations run on a communication stream that
// first waits for the work already queued on the default stream (where LibTorch computes unless told
// otherwise); wait() polls the operation's completion event, so a peer that never arrives becomes
// an error after the time-out instead of a hang.
#pragma once
#include <memory>

#include "parallel/comm/communicator.h"

namespace loom {

// `bootstrap` (an MPI communicator of the same ranks) is kept for splitting. `device` is the CUDA
// device this rank uses, usually its local rank on the node.
std::unique_ptr<Communicator> nccl_communicator(std::unique_ptr<Communicator> bootstrap, int device, double timeout_s);

}  // namespace loom
