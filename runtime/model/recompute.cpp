#include "runtime/model/recompute.h"

namespace loom {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The function travels from forward to backward inside the autograd context.
struct FunctionHolder : torch::CustomClassHolder {
  explicit FunctionHolder(TensorFunction f) : fn(std::move(f)) {}
  TensorFunction fn;
};

// The forward of both: fn without a graph, keeping only its inputs and fn itself.
variable_list forward_without_graph(AutogradContext* ctx, const TensorFunction& fn, torch::TensorList inputs) {
  variable_list outputs;
  {
    torch::NoGradGuard no_grad;
    outputs = fn(inputs.vec());
  }
  ctx->save_for_backward(inputs.vec());
  ctx->saved_data["fn"] = c10::IValue::make_capsule(c10::make_intrusive<FunctionHolder>(fn));
  return outputs;
}

// The first half of both backwards: fn again, with a graph, on fresh leaves holding the inputs.
struct Recomputed {
  variable_list inputs;          // the leaves (floating-point inputs require a gradient)
  variable_list roots, seeds;    // the outputs that receive a gradient, and those gradients
};

Recomputed recompute(AutogradContext* ctx, const variable_list& grad_outputs) {
  const auto holder = c10::static_intrusive_pointer_cast<FunctionHolder>(ctx->saved_data["fn"].toCapsule());
  Recomputed r;
  for (const auto& t : ctx->get_saved_variables()) r.inputs.push_back(t.detach().requires_grad_(t.is_floating_point()));
  variable_list outputs;
  {
    torch::AutoGradMode enable(true);
    outputs = holder->fn(r.inputs);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (grad_outputs[i].defined() && outputs[i].requires_grad()) {
      r.roots.push_back(outputs[i]);
      r.seeds.push_back(grad_outputs[i]);
    }
  }
  return r;
}

// The backward differentiates the recomputed graph with respect to the inputs' leaves only, or
// (reentrant) backpropagates through it, which also reaches the parameters fn uses.
template <bool Reentrant>
struct RecomputeFn : torch::autograd::Function<RecomputeFn<Reentrant>> {
  static variable_list forward(AutogradContext* ctx, const TensorFunction& fn, torch::TensorList inputs) {
    return forward_without_graph(ctx, fn, inputs);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const Recomputed r = recompute(ctx, grad_outputs);
    variable_list result{torch::Tensor()};  // for fn itself
    if constexpr (Reentrant) {
      if (!r.roots.empty()) torch::autograd::backward(r.roots, r.seeds);
      for (const auto& t : r.inputs) result.push_back(t.requires_grad() ? t.grad() : torch::Tensor());
      return result;
    }
    variable_list leaves;
    for (const auto& t : r.inputs)
      if (t.requires_grad()) leaves.push_back(t);
    variable_list leaf_grads = r.roots.empty() ? variable_list(leaves.size())
                                               : torch::autograd::grad(r.roots, leaves, r.seeds, false, false, true);
    size_t next = 0;
    for (const auto& t : r.inputs) result.push_back(t.requires_grad() ? leaf_grads[next++] : torch::Tensor());
    return result;
  }
};

}  // namespace

std::vector<torch::Tensor> recompute_in_backward(const TensorFunction& fn, const std::vector<torch::Tensor>& inputs) {
  return RecomputeFn<false>::apply(fn, torch::TensorList(inputs));
}

std::vector<torch::Tensor> recompute_module_in_backward(const TensorFunction& fn, const std::vector<torch::Tensor>& inputs) {
  if (!torch::GradMode::is_enabled()) return fn(inputs);
  return RecomputeFn<true>::apply(fn, torch::TensorList(inputs));
}

}  // namespace loom
