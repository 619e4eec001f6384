#include "parallel/tensor/reduce_add_norm.h"

#include <ATen/SequenceNumber.h>
#include <torch/csrc/autograd/functions/utils.h>

#include "kernels/add_rms_norm.h"
#include "runtime/core/error.h"
#include "runtime/core/precision.h"

namespace loom {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Rows padded with zeros to `rows`.
torch::Tensor padded(const torch::Tensor& t, int64_t rows) {
  if (t.size(0) == rows) return t.contiguous();
  return torch::cat({t, torch::zeros({rows - t.size(0), t.size(1)}, t.options())});
}

// Summed in float32 or wider whatever the rows' dtype (as TokenWeave's kernel accumulates), then
// rounded back once.
torch::Tensor reduce_scatter_rows(const torch::Tensor& full, Communicator& tp) {
  const auto wide = full.to(accumulation_dtype(full.scalar_type())).contiguous();
  auto mine = torch::empty({full.size(0) / tp.size(), full.size(1)}, wide.options());
  tp.reduce_scatter(wide, mine, ReduceOp::kSum).wait();
  return mine.to(full.scalar_type());
}

torch::Tensor all_gather_rows(const torch::Tensor& mine, Communicator& tp) {
  auto full = torch::empty({mine.size(0) * tp.size(), mine.size(1)}, mine.options());
  tp.all_gather(mine.contiguous(), full).wait();
  return full;
}

int64_t rows_per_rank(int64_t n, const Communicator& tp) { return (n + tp.size() - 1) / tp.size(); }

// The forward of one boundary: its residual rows (and what the backward needs) and every row normed.
struct Boundary {
  AddNorm rows;
  torch::Tensor normed;
};

Boundary boundary_forward(const torch::Tensor& partial, const torch::Tensor& residual, const torch::Tensor& gamma, double eps,
                          Communicator& tp) {
  const int64_t n = partial.size(0), rows = rows_per_rank(n, tp);
  const auto s = reduce_scatter_rows(padded(partial, rows * tp.size()), tp);
  Boundary b{add_rms_norm(residual, s, gamma, eps), {}};
  b.normed = all_gather_rows(b.rows.normed, tp).narrow(0, 0, n);
  return b;
}

// dresidual: into the residual rows out of the boundary; dnormed: this rank's partial sums of the
// gradient of every normed row (either undefined for none). Returns the gradients of partial, of
// the residual rows into the boundary and of gamma (this rank's rows' share).
struct BoundaryGrads {
  torch::Tensor partial, residual, gamma;
};

BoundaryGrads boundary_backward(const AddNorm& f, const torch::Tensor& gamma, int64_t n, const torch::Tensor& dresidual,
                                const torch::Tensor& dnormed, Communicator& tp) {
  const int64_t rows = f.sum.size(0);
  const auto mine = dnormed.defined() ? reduce_scatter_rows(padded(dnormed, rows * tp.size()), tp) : torch::zeros_like(f.sum);
  const AddNormGrads g = add_rms_norm_backward(f, gamma, mine, dresidual);
  return {all_gather_rows(g.dsum, tp).narrow(0, 0, n), g.dsum, g.dweight};
}

// `residual` is empty at the embedding's boundary (autograd takes no undefined inputs).
torch::Tensor or_none(const torch::Tensor& residual) { return residual.numel() > 0 ? residual : torch::Tensor(); }
torch::Tensor or_empty(const torch::Tensor& residual, const torch::Tensor& like) {
  return residual.defined() ? residual : torch::empty({0}, like.options());
}

struct ReduceAddNormFn : torch::autograd::Function<ReduceAddNormFn> {
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& partial, const torch::Tensor& residual,
                             const torch::Tensor& gamma, double eps, Communicator* tp) {
    const Boundary b = boundary_forward(partial, or_none(residual), gamma, eps, *tp);
    ctx->save_for_backward({b.rows.sum, b.rows.rstd, gamma});
    ctx->saved_data["tp"] = reinterpret_cast<int64_t>(tp);
    ctx->saved_data["rows"] = partial.size(0);
    ctx->saved_data["has_residual"] = residual.numel() > 0;
    return {b.rows.sum, b.normed};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto& tp = *reinterpret_cast<Communicator*>(ctx->saved_data["tp"].toInt());
    const BoundaryGrads g = boundary_backward({saved[0], {}, saved[1]}, saved[2], ctx->saved_data["rows"].toInt(), grads[0],
                                              grads[1], tp);
    return {g.partial, ctx->saved_data["has_residual"].toBool() ? g.residual : torch::Tensor(), g.gamma, {}, {}};
  }
};

// The asynchronous form: the forward and the backward each run on the worker, into tensors made on
// the caller's thread. What the autograd engine would read before the worker is done is guarded:
// the forward's outputs by PendingNorm::wait(), the backward's gradients by a WaitForWorker node
// on each input, which waits for the worker before passing the gradient on.
struct AsyncState : torch::CustomClassHolder {
  Communicator* tp = nullptr;
  BoundaryWorker* worker = nullptr;
  double eps = 0;
  int64_t n = 0;
  bool has_residual = false;
  torch::Tensor gamma;                   // detached: the worker reads it
  AddNorm rows;                          // filled by the forward task
  std::shared_future<void> forward_done, backward_done;
};

c10::intrusive_ptr<AsyncState> state_of(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<AsyncState>(ctx->saved_data["state"].toCapsule());
}

// Autograd runs the ready node with the highest sequence number first. A WaitForWorker is built by
// hand to take a number reserved before the forward (a Function's node takes the next one), so it
// comes after every computation that is ready, and the waits come in the reverse order of the
// forward, as the boundaries' backwards were queued.
struct WaitForWorker : torch::autograd::Node {
  WaitForWorker(uint64_t priority, torch::autograd::edge_list&& next, c10::intrusive_ptr<AsyncState> state)
      : Node(priority, std::move(next)), state(std::move(state)) {}
  tensor_list apply(tensor_list&& grads) override {
    state->backward_done.get();
    return std::move(grads);
  }
  c10::intrusive_ptr<AsyncState> state;
};

// x itself, with a WaitForWorker between it and what reads it.
torch::Tensor wait_for_worker(const torch::Tensor& x, uint64_t priority, const c10::intrusive_ptr<AsyncState>& state) {
  if (!x.requires_grad()) return x;
  auto node = std::shared_ptr<WaitForWorker>(new WaitForWorker(priority, torch::autograd::collect_next_edges(x), state),
                                             torch::autograd::deleteNode);
  torch::Tensor same;
  {
    const torch::NoGradGuard no_grad;
    same = torch::empty({0}, x.options()).set_(x);  // the same storage, not an autograd view of x
  }
  torch::autograd::set_history(same, node);
  return same;
}

struct AsyncReduceAddNormFn : torch::autograd::Function<AsyncReduceAddNormFn> {
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& partial, const torch::Tensor& residual,
                             const torch::Tensor& gamma, const c10::intrusive_ptr<AsyncState>& s) {
    ctx->saved_data["state"] = c10::IValue::make_capsule(s);
    const int64_t rows = rows_per_rank(s->n, *s->tp), d = partial.size(1);
    auto sum = torch::empty({rows, d}, partial.options()), normed = torch::empty({s->n, d}, partial.options());
    s->gamma = gamma.detach();
    // The worker writes into detached views: no autograd state is shared with this thread.
    s->forward_done = s->worker->submit([s, partial = partial.detach(),
                                         residual = s->has_residual ? residual.detach() : torch::Tensor(),
                                         sum = sum.detach(), normed = normed.detach()] {
      const Boundary b = boundary_forward(partial, residual, s->gamma, s->eps, *s->tp);
      s->rows = b.rows;
      sum.copy_(b.rows.sum);
      normed.copy_(b.normed);
    });
    return {sum, normed};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = state_of(ctx);
    s->forward_done.get();
    const auto& like = s->rows.sum;
    auto dpartial = torch::empty({s->n, like.size(1)}, like.options());
    auto dresidual = s->has_residual ? torch::empty_like(like) : torch::Tensor();
    auto dgamma = torch::empty({like.size(1)}, like.options());
    s->backward_done = s->worker->submit([s, dresidual_in = grads[0], dnormed = grads[1], dpartial = dpartial.detach(),
                                          dresidual = dresidual.defined() ? dresidual.detach() : torch::Tensor(),
                                          dgamma = dgamma.detach()] {
      const BoundaryGrads g = boundary_backward(s->rows, s->gamma, s->n, dresidual_in, dnormed, *s->tp);
      dpartial.copy_(g.partial);
      if (dresidual.defined()) dresidual.copy_(g.residual);
      dgamma.copy_(g.gamma);
    });
    return {dpartial, dresidual, dgamma, {}};
  }
};

}  // namespace

ReducedNorm reduce_add_norm(const torch::Tensor& partial, const torch::Tensor& residual, const torch::Tensor& gamma,
                            double eps, Communicator& tp) {
  const auto out = ReduceAddNormFn::apply(partial, or_empty(residual, partial), gamma, eps, &tp);
  return {out[0], out[1]};
}

AsyncBoundaries::AsyncBoundaries(Communicator& tp, BoundaryWorker& worker, int64_t count) : tp_(tp), worker_(worker) {
  // Three waits per boundary (partial, residual, gamma), numbered below every node made after this.
  next_priority_ = at::sequence_number::get_and_increment();
  for (int64_t i = 1; i < 3 * count; ++i) at::sequence_number::get_and_increment();
  end_priority_ = next_priority_ + static_cast<uint64_t>(3 * count);
}

PendingNorm AsyncBoundaries::start(const torch::Tensor& partial, const torch::Tensor& residual, const torch::Tensor& gamma,
                                   double eps) {
  check(next_priority_ + 3 <= end_priority_, "more asynchronous boundaries started than were reserved");
  auto s = c10::make_intrusive<AsyncState>();
  s->tp = &tp_;
  s->worker = &worker_;
  s->eps = eps;
  s->n = partial.size(0);
  s->has_residual = residual.defined();
  const auto guarded = [&](const torch::Tensor& t) { return wait_for_worker(t, next_priority_++, s); };
  const auto p = guarded(partial), r = s->has_residual ? guarded(residual) : or_empty(residual, partial);
  const auto out = AsyncReduceAddNormFn::apply(p, r, guarded(gamma), s);
  return {{out[0], out[1]}, s->forward_done};
}

}  // namespace loom
