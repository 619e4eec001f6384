// The ranks a multi-rank test runs on, and how it makes communicators among them. One definition per
// test binary: CPU tensors over MPI (test_ranks_mpi.cpp, in loom_mpi_tests) or CUDA tensors over
// NCCL (tests/gpu/test_ranks_nccl.cpp, in loom_nccl_tests), so the same tests check both backends.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "parallel/comm/communicator.h"

namespace loom::test {

struct TestRanks {
  std::string skip;  // non-empty: why these ranks cannot run the test here (the same on every rank)
  torch::Device device{torch::kCPU};
  int rank = 0, size = 1;
  // A new communicator over all ranks, for tensors on `device`; `name` labels its messages.
  std::function<std::unique_ptr<Communicator>(const std::string& name)> group;

  // `t` (made on the host, the same on every rank) on this binary's device.
  torch::Tensor on_device(const torch::Tensor& t) const { return t.to(device); }
};

TestRanks test_ranks();

}  // namespace loom::test
