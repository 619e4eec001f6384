// Entry point of the multi-rank tests: ctest starts this binary under mpirun at 2, 3 and 4 ranks.
// Every rank runs every test; a failure on any rank fails the job. Only rank 0 prints the report.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "parallel/comm/mpi_communicator.h"

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  ::testing::InitGoogleTest(&argc, argv);
  loom::mpi_world(60);  // initialises MPI before any test runs
  if (loom::mpi_world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
