#include "parallel/comm/mpi_communicator.h"
#include "tests/mpi/test_ranks.h"

namespace loom::test {

TestRanks test_ranks() {
  TestRanks r;
  r.rank = mpi_world_rank();
  r.size = mpi_world_size();
  r.group = [rank = r.rank](const std::string& name) { return mpi_world(60)->split(0, rank, name); };
  return r;
}

}  // namespace loom::test
