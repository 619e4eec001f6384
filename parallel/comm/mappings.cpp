#include "parallel/comm/mappings.h"

#include <numeric>

namespace loom::differentiable {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

void keep(AutogradContext* ctx, Communicator* comm) { ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm); }
Communicator& kept(AutogradContext* ctx) { return *reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt()); }

torch::Tensor summed(const torch::Tensor& t, Communicator& comm) {
  auto out = t.contiguous().clone();
  all_reduce_now(comm, out);
  return out;
}

torch::Tensor scattered(const torch::Tensor& t, Communicator& comm) {
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape[0] /= comm.size();
  auto out = torch::empty(shape, t.options());
  comm.reduce_scatter(t.contiguous(), out, ReduceOp::kSum).wait();
  return out;
}

torch::Tensor gathered(const torch::Tensor& t, Communicator& comm) {
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape[0] *= comm.size();
  auto out = torch::empty(shape, t.options());
  comm.all_gather(t.contiguous(), out).wait();
  return out;
}

torch::Tensor exchanged(const torch::Tensor& t, const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows,
                        Communicator& comm) {
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape[0] = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  auto out = torch::empty(shape, t.options());
  comm.all_to_all(t.contiguous(), send_rows, out, recv_rows).wait();
  return out;
}

// A collective whose adjoint is another collective of the same shape of arguments.
using Collective = torch::Tensor (*)(const torch::Tensor&, Communicator&);

template <Collective Forward, Collective Adjoint>
struct CollectiveFn : torch::autograd::Function<CollectiveFn<Forward, Adjoint>> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Communicator* comm) {
    keep(ctx, comm);
    return Forward(x, *comm);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) { return {Adjoint(grads[0], kept(ctx)), {}}; }
};

struct AllToAllFn : torch::autograd::Function<AllToAllFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const std::vector<int64_t>& send_rows,
                               const std::vector<int64_t>& recv_rows, Communicator* comm) {
    keep(ctx, comm);
    ctx->saved_data["send_rows"] = send_rows;
    ctx->saved_data["recv_rows"] = recv_rows;
    return exchanged(x, send_rows, recv_rows, *comm);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto send_rows = ctx->saved_data["send_rows"].toIntVector(), recv_rows = ctx->saved_data["recv_rows"].toIntVector();
    return {exchanged(grads[0], recv_rows, send_rows, kept(ctx)), {}, {}, {}};
  }
};

}  // namespace

torch::Tensor all_reduce(const torch::Tensor& x, Communicator& comm) { return CollectiveFn<summed, summed>::apply(x, &comm); }
torch::Tensor reduce_scatter(const torch::Tensor& x, Communicator& comm) {
  return CollectiveFn<scattered, gathered>::apply(x, &comm);
}
torch::Tensor all_gather(const torch::Tensor& x, Communicator& comm) {
  return CollectiveFn<gathered, scattered>::apply(x, &comm);
}
torch::Tensor all_to_all(const torch::Tensor& x, const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows,
                         Communicator& comm) {
  return AllToAllFn::apply(x, send_rows, recv_rows, &comm);
}

}  // namespace loom::differentiable
