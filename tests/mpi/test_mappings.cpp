// The differentiable collectives (parallel/comm/mappings.h) in float64: each forward against the
// collective computed locally, and each backward against its adjoint. Every rank's loss is
// l_r = <w_r, y_r>, so the gradient that reaches x_r is the adjoint applied to all ranks' w, which
// every rank can compute because every rank can regenerate every other rank's x and w.
#include <gtest/gtest.h>

#include <numeric>

#include "parallel/comm/mappings.h"
#include "parallel/comm/mpi_communicator.h"
#include "tests/relative_error.h"

namespace loom {
namespace {

using test::relative_error;

torch::Tensor random_of(int rank, int64_t salt, std::vector<int64_t> shape) {
  torch::manual_seed(7919 * salt + rank);
  return torch::randn(shape, torch::kFloat64);
}

class Mappings : public ::testing::Test {
 protected:
  std::unique_ptr<Communicator> world = mpi_world(60);
  int rank = world->rank(), size = world->size();

  // y = op(x_rank), l = <w_rank, y>, backward; returns {y, dl/dx}.
  template <class Op>
  std::pair<torch::Tensor, torch::Tensor> run(const torch::Tensor& x_in, const torch::Tensor& w, Op op) {
    const auto x = x_in.clone().requires_grad_();
    const auto y = op(x);
    (w * y).sum().backward();
    return {y.detach(), x.grad()};
  }
};

TEST_F(Mappings, AllReduceSumsAndSoDoesItsBackward) {
  const auto x = [](int r) { return random_of(r, 1, {5, 3}); };
  const auto w = [](int r) { return random_of(r, 2, {5, 3}); };
  const auto [y, dx] = run(x(rank), w(rank), [&](const torch::Tensor& t) { return differentiable::all_reduce(t, *world); });
  auto sum_x = torch::zeros({5, 3}, torch::kFloat64), sum_w = torch::zeros({5, 3}, torch::kFloat64);
  for (int r = 0; r < size; ++r) sum_x += x(r), sum_w += w(r);
  EXPECT_LT(relative_error(y, sum_x), 1e-14);
  EXPECT_LT(relative_error(dx, sum_w), 1e-14);
}

TEST_F(Mappings, ReduceScatterTakesThisRanksPartAndItsBackwardGathers) {
  const int64_t m = 3;
  const auto x = [&](int r) { return random_of(r, 3, {size * m, 2}); };
  const auto w = [&](int r) { return random_of(r, 4, {m, 2}); };
  const auto [y, dx] = run(x(rank), w(rank), [&](const torch::Tensor& t) { return differentiable::reduce_scatter(t, *world); });
  auto sum_x = torch::zeros({size * m, 2}, torch::kFloat64);
  std::vector<torch::Tensor> all_w;
  for (int r = 0; r < size; ++r) sum_x += x(r), all_w.push_back(w(r));
  EXPECT_LT(relative_error(y, sum_x.narrow(0, rank * m, m)), 1e-14);
  EXPECT_LT(relative_error(dx, torch::cat(all_w)), 1e-14);
}

TEST_F(Mappings, AllGatherConcatenatesAndItsBackwardReduceScatters) {
  const int64_t m = 2;
  const auto x = [&](int r) { return random_of(r, 5, {m, 4}); };
  const auto w = [&](int r) { return random_of(r, 6, {size * m, 4}); };
  const auto [y, dx] = run(x(rank), w(rank), [&](const torch::Tensor& t) { return differentiable::all_gather(t, *world); });
  std::vector<torch::Tensor> all_x;
  auto sum_w = torch::zeros({size * m, 4}, torch::kFloat64);
  for (int r = 0; r < size; ++r) all_x.push_back(x(r)), sum_w += w(r);
  EXPECT_LT(relative_error(y, torch::cat(all_x)), 1e-14);
  EXPECT_LT(relative_error(dx, sum_w.narrow(0, rank * m, m)), 1e-14);
}

// Uneven splits, zeros among them: rank r sends (r + p) % 3 rows to rank p.
TEST_F(Mappings, AllToAllMovesRowsAndItsBackwardSendsTheirGradientsBack) {
  const auto rows = [](int from, int to) { return static_cast<int64_t>((from + to) % 3); };
  const auto offset = [&](int from, int to) {  // where rank `from`'s rows for `to` start in its input
    int64_t o = 0;
    for (int q = 0; q < to; ++q) o += rows(from, q);
    return o;
  };
  const auto total_sent = [&](int from) { return offset(from, size); };
  const auto total_received = [&](int to) {
    int64_t n = 0;
    for (int p = 0; p < size; ++p) n += rows(p, to);
    return n;
  };
  const auto x = [&](int r) { return random_of(r, 7, {total_sent(r), 3}); };
  const auto w = [&](int r) { return random_of(r, 8, {total_received(r), 3}); };
  std::vector<int64_t> send_rows, recv_rows;
  for (int p = 0; p < size; ++p) send_rows.push_back(rows(rank, p)), recv_rows.push_back(rows(p, rank));
  const auto [y, dx] = run(x(rank), w(rank), [&](const torch::Tensor& t) {
    return differentiable::all_to_all(t, send_rows, recv_rows, *world);
  });
  std::vector<torch::Tensor> expected_y, expected_dx;
  int64_t at = 0;
  for (int p = 0; p < size; ++p) {
    expected_y.push_back(x(p).narrow(0, offset(p, rank), rows(p, rank)));
    // The rows this rank sent to p came back with p's gradient of them, which sits in w(p) where p
    // received them: after the rows p got from ranks before this one.
    int64_t in_p = 0;
    for (int q = 0; q < rank; ++q) in_p += rows(q, p);
    expected_dx.push_back(w(p).narrow(0, in_p, rows(rank, p)));
    at += rows(p, rank);
  }
  EXPECT_EQ(y.size(0), at);
  EXPECT_LT(relative_error(y, torch::cat(expected_y)), 1e-14);
  EXPECT_LT(relative_error(dx, torch::cat(expected_dx)), 1e-14);
}

}  // namespace
}  // namespace loom
