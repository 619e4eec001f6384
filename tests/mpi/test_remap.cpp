// Zeppelin's remap on real ranks, float64: to the linear layout and back is the identity, every
// rank ends with the plan's even share, each token lands on the rank the plan sends it to, and the
// gradient through the remap is each token's own gradient carried back. At 2 and 3 ranks as one
// node, at 4 as 2 nodes of 2; one rank starts with no tokens.
#include <gtest/gtest.h>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/placement/remap.h"

namespace loom {
namespace {

// Rank r's tokens in the attention layout; rank 1 holds none, the last rank most.
std::vector<int64_t> uneven_counts(int size) {
  std::vector<int64_t> counts;
  for (int r = 0; r < size; ++r) counts.push_back(r == 1 ? 0 : 3 + 7 * r);
  return counts;
}

// Rows whose first column is the token's global id (its rank's offset plus its row) and the rest
// a function of it, so where a row went can be read from the row.
torch::Tensor rows_of_ids(const torch::Tensor& ids) {
  const auto id = ids.to(torch::kFloat64).unsqueeze(1);
  return torch::cat({id, torch::sin(id * 0.37 + torch::arange(1, 4, torch::kFloat64))}, 1);
}

TEST(Remap, TheRoundTripIsTheIdentityAndTheGradientIsExact) {
  std::unique_ptr<Communicator> comm = mpi_world(60);
  const int rank = comm->rank(), size = comm->size();
  Topology t;
  t.nodes = size == 4 ? 2 : 1;
  t.ranks_per_node = size / t.nodes;
  const auto counts = uneven_counts(size);
  const RemapPlan plan = plan_remap(counts, t);
  int64_t offset = 0;
  for (int r = 0; r < rank; ++r) offset += counts[r];
  const auto ids = torch::arange(offset, offset + counts[rank], torch::kInt64);
  const auto x = rows_of_ids(ids).requires_grad_();

  const auto y = to_linear_layout(x, plan, *comm);
  ASSERT_EQ(y.size(0), plan.after[rank]);
  // The rows from rank p arrive in rank order: the plan's send rows of p, from p's own offset.
  std::vector<int64_t> want;
  for (int p = 0, p_offset = 0; p < size; p_offset += counts[p], ++p) {
    const auto sends = plan.send_rows(p);
    int64_t first = p_offset;
    for (int q = 0; q < rank; ++q) first += sends[q];
    for (int64_t i = 0; i < sends[rank]; ++i) want.push_back(first + i);
  }
  EXPECT_TRUE(torch::equal(y.detach(), rows_of_ids(torch::tensor(want, torch::kInt64)))) << "rank " << rank;

  const auto back = to_attention_layout(y, plan, *comm);
  EXPECT_TRUE(torch::equal(back.detach(), x.detach())) << "the round trip moved rank " << rank << "'s rows";

  // loss = sum over ranks of sum(g(id) * y): each token's gradient is g of its own id.
  const auto g = [](const torch::Tensor& rows) { return torch::cos(rows.select(1, 0).unsqueeze(1) * 1.3 + 0.1 * rows); };
  (g(y.detach()) * y).sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), g(x.detach()), 0, 0)) << "rank " << rank;
}

}  // namespace
}  // namespace loom
