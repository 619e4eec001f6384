// What the sequence-parallel attention functions share: the layout, this rank, its ring
// neighbours and the communicators, carried from forward to backward through the autograd context
// (communicators by address: they must outlive the backward).
#pragma once
#include <functional>

#include <torch/torch.h>

#include "kernels/attention/block_attention.h"
#include "parallel/sequence/sequence_layout.h"
#include "parallel/comm/communicator.h"

namespace loom {

struct SpContext {
  SequenceLayout layout;
  double scale = 1;
  Communicator* forward = nullptr;  // the travelling shards: Q (token_ring) or K/V (ring)
  Communicator* back = nullptr;     // token_ring: partial results returned to their owner

  int64_t rank() const { return forward->rank(); }
  // The rank `hops` places on round the ring (negative: back).
  int peer(int64_t hops) const {
    const int64_t n = layout.ranks;
    return static_cast<int>(((rank() + hops) % n + n) % n);
  }
  int next() const { return peer(1); }
  int prev() const { return peer(-1); }

  void save(torch::autograd::AutogradContext* ctx) const {
    auto& d = ctx->saved_data;
    d["causal"] = layout.causal;
    d["ranks"] = layout.ranks;
    d["length"] = layout.length;
    d["padded_length"] = layout.padded_length;
    d["index"] = layout.index;
    d["pos"] = layout.pos;
    d["doc"] = layout.doc;
    d["window"] = layout.window;
    d["scale"] = scale;
    d["forward"] = reinterpret_cast<int64_t>(forward);
    d["back"] = reinterpret_cast<int64_t>(back);
  }

  static SpContext load(torch::autograd::AutogradContext* ctx) {
    auto& d = ctx->saved_data;
    SpContext c;
    c.layout.causal = d["causal"].toBool();
    c.layout.ranks = d["ranks"].toInt();
    c.layout.length = d["length"].toInt();
    c.layout.padded_length = d["padded_length"].toInt();
    c.layout.index = d["index"].toTensor();
    c.layout.pos = d["pos"].toTensor();
    c.layout.doc = d["doc"].toTensor();
    c.layout.window = d["window"].toInt();
    c.scale = d["scale"].toDouble();
    c.forward = reinterpret_cast<Communicator*>(d["forward"].toInt());
    c.back = reinterpret_cast<Communicator*>(d["back"].toInt());
    return c;
  }
};

// How shards travel round the ring: `direction` ranks per step (+1: to rank + 1; -1: to rank - 1),
// and which of a shard's rows are aboard at each step, from the layout, so both ends agree.
struct Route {
  int direction = 1;
  // rows(owner, step): the rows of `owner`'s shard held at ring step `step` (by rank owner +
  // step * direction); empty where the shard does not get that far. Whole at step 0, and no step's
  // rows outside the previous step's: a shard only ever sheds rows.
  std::function<RowRange(int64_t owner, int64_t step)> rows;

  // Whose shard this rank holds at `step`.
  int owner_at(const SpContext& c, int64_t step) const { return c.peer(-direction * step); }
};

// The hop of ring step `step`: this rank passes on the rows of the shard it holds that travel on,
// and receives into `arriving` the rows of the one it holds next. `visiting` is what travels with a
// shard (each [heads, rows, ...]), `own` this rank's (the shapes of the receive buffers).
inline CommHandle pass_shard(const SpContext& c, const Route& route, int64_t step, const std::vector<torch::Tensor>& visiting,
                             const std::vector<torch::Tensor>& own, std::vector<torch::Tensor>& arriving) {
  std::vector<P2POp> ops;
  arriving.clear();
  if (step + 1 < c.layout.ranks) {
    const int64_t holding = route.owner_at(c, step), next = route.owner_at(c, step + 1);
    const RowRange held = route.rows(holding, step), sent = route.rows(holding, step + 1), received = route.rows(next, step + 1);
    if (!sent.empty())
      for (const auto& t : visiting) ops.push_back(send_to(c.peer(route.direction), t.narrow(1, sent.begin - held.begin, sent.count)));
    if (!received.empty()) {
      for (const auto& t : own) {
        std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
        shape[1] = received.count;
        arriving.push_back(torch::empty(shape, t.options()));
        ops.push_back(recv_from(c.peer(-route.direction), arriving.back()));
      }
    }
  }
  return ops.empty() ? CommHandle() : c.forward->exchange(ops);
}

// Gradient accumulators for this rank's q, k and v shards, in the accumulation dtype.
inline BlockGrads zero_grads(const BlockOutput& result, const torch::Tensor& k, const torch::Tensor& v) {
  return {torch::zeros_like(result.out), torch::zeros(k.sizes(), result.out.options()), torch::zeros(v.sizes(), result.out.options())};
}

using SpForward = BlockOutput (*)(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const SpContext& c);
using SpBackward = BlockGrads (*)(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v, const BlockOutput& result, const SpContext& c);

// The autograd function of a sequence-parallel attention algorithm given by its forward and
// backward. Out and gradients are returned in the inputs' dtypes; partials stay in the
// accumulation dtype.
template <SpForward Forward, SpBackward Backward>
struct SequenceParallelFn : torch::autograd::Function<SequenceParallelFn<Forward, Backward>> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const SpContext& c) {
    const BlockOutput result = Forward(q, k, v, c);
    ctx->save_for_backward({q, k, v, result.out, result.lse});
    c.save(ctx);
    return result.out.to(q.scalar_type());
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const BlockGrads g = Backward(grads[0], s[0], s[1], s[2], {s[3], s[4]}, SpContext::load(ctx));
    return {g.dq.to(s[0].scalar_type()), g.dk.to(s[1].scalar_type()), g.dv.to(s[2].scalar_type()), {}};
  }
};

}  // namespace loom
