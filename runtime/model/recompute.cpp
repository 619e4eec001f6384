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

void keep_function(AutogradContext* ctx, const TensorFunction& fn) {
  ctx->saved_data["fn"] = c10::IValue::make_capsule(c10::make_intrusive<FunctionHolder>(fn));
}

const TensorFunction& saved_function(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<FunctionHolder>(ctx->saved_data["fn"].toCapsule())->fn;
}

// New leaves holding the saved tensors, the floating-point ones requiring a gradient.
variable_list fresh_leaves(const variable_list& saved) {
  variable_list leaves;
  for (const auto& t : saved) leaves.push_back(t.detach().requires_grad_(t.is_floating_point()));
  return leaves;
}

// The forward of both: fn without a graph, keeping only its inputs and fn itself.
variable_list forward_without_graph(AutogradContext* ctx, const TensorFunction& fn, torch::TensorList inputs) {
  variable_list outputs;
  {
    torch::NoGradGuard no_grad;
    outputs = fn(inputs.vec());
  }
  ctx->save_for_backward(inputs.vec());
  keep_function(ctx, fn);
  return outputs;
}

// The first half of both backwards: fn again, with a graph, on fresh leaves holding the inputs.
struct Recomputed {
  variable_list inputs;          // the leaves (floating-point inputs require a gradient)
  variable_list roots, seeds;    // the outputs that receive a gradient, and those gradients
};

Recomputed recompute(AutogradContext* ctx, const variable_list& grad_outputs) {
  Recomputed r;
  r.inputs = fresh_leaves(ctx->get_saved_variables());
  variable_list outputs;
  {
    torch::AutoGradMode enable(true);
    outputs = saved_function(ctx)(r.inputs);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (grad_outputs[i].defined() && outputs[i].requires_grad()) {
      r.roots.push_back(outputs[i]);
      r.seeds.push_back(grad_outputs[i]);
    }
  }
  return r;
}

// The gradients of `roots` seeded with `seeds` with respect to each of the leaves `inputs`
// (undefined for those without a gradient).
variable_list gradients_of(const variable_list& inputs, const variable_list& roots, const variable_list& seeds) {
  variable_list leaves;
  for (const auto& t : inputs)
    if (t.requires_grad()) leaves.push_back(t);
  const variable_list leaf_grads =
      roots.empty() ? variable_list(leaves.size()) : torch::autograd::grad(roots, leaves, seeds, false, false, true);
  variable_list grads;
  size_t next = 0;
  for (const auto& t : inputs) grads.push_back(t.requires_grad() ? leaf_grads[next++] : torch::Tensor());
  return grads;
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
    const variable_list grads = gradients_of(r.inputs, r.roots, r.seeds);
    result.insert(result.end(), grads.begin(), grads.end());
    return result;
  }
};

// The linear's backward needs x, which the forward let go: recompute it from the kept inputs, take
// the weight's gradient, and send x's gradient back through fn. The weight is saved last.
struct LinearOfRecomputedFn : torch::autograd::Function<LinearOfRecomputedFn> {
  static torch::Tensor forward(AutogradContext* ctx, const TensorFunction& fn, torch::TensorList inputs,
                               const torch::Tensor& weight) {
    const torch::Tensor x = fn(inputs.vec())[0];  // grad mode is off inside a Function's forward
    variable_list saved = inputs.vec();
    saved.push_back(weight);
    ctx->save_for_backward(saved);
    keep_function(ctx, fn);
    return torch::matmul(x, weight.t());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list inputs = fresh_leaves(ctx->get_saved_variables());
    const torch::Tensor weight = inputs.back().detach();
    inputs.pop_back();
    torch::Tensor x;
    {
      torch::AutoGradMode enable(true);
      x = saved_function(ctx)(inputs)[0];
    }
    const torch::Tensor& g = grad_outputs[0];
    variable_list result{torch::Tensor()};  // for fn itself
    const variable_list grads = x.requires_grad() ? gradients_of(inputs, {x}, {torch::matmul(g, weight)})
                                                  : variable_list(inputs.size());
    result.insert(result.end(), grads.begin(), grads.end());
    result.push_back(g.reshape({-1, g.size(-1)}).t().mm(x.detach().reshape({-1, x.size(-1)})));
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

torch::Tensor linear_of_recomputed(const TensorFunction& fn, const std::vector<torch::Tensor>& inputs,
                                   const torch::Tensor& weight) {
  if (!torch::GradMode::is_enabled()) return torch::matmul(fn(inputs)[0], weight.t());
  return LinearOfRecomputedFn::apply(fn, torch::TensorList(inputs), weight);
}

}  // namespace loom
