#include "parallel/placement/remap.h"

#include <string>

#include "parallel/comm/mappings.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

void check_rows(const torch::Tensor& x, int64_t want, const char* layout, Communicator& comm) {
  check(x.size(0) == want, "remap on rank " + std::to_string(comm.rank()) + ": " + std::to_string(x.size(0)) +
                               " rows, but the plan's " + layout + " layout gives it " + std::to_string(want));
}

}  // namespace

torch::Tensor to_linear_layout(const torch::Tensor& x, const RemapPlan& plan, Communicator& comm) {
  check_rows(x, plan.before[comm.rank()], "attention", comm);
  return differentiable::all_to_all(x, plan.send_rows(comm.rank()), plan.recv_rows(comm.rank()), comm);
}

torch::Tensor to_attention_layout(const torch::Tensor& y, const RemapPlan& plan, Communicator& comm) {
  check_rows(y, plan.after[comm.rank()], "linear", comm);
  return differentiable::all_to_all(y, plan.recv_rows(comm.rank()), plan.send_rows(comm.rank()), comm);
}

}  // namespace loom
