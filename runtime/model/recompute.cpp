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

struct RecomputeFn : torch::autograd::Function<RecomputeFn> {
  static variable_list forward(AutogradContext* ctx, const TensorFunction& fn, torch::TensorList inputs) {
    variable_list outputs;
    {
      torch::NoGradGuard no_grad;
      outputs = fn(inputs.vec());
    }
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["fn"] = c10::IValue::make_capsule(c10::make_intrusive<FunctionHolder>(fn));
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto holder = c10::static_intrusive_pointer_cast<FunctionHolder>(ctx->saved_data["fn"].toCapsule());
    variable_list inputs, leaves;
    for (const auto& t : ctx->get_saved_variables()) {
      inputs.push_back(t.detach().requires_grad_(t.is_floating_point()));
      if (inputs.back().requires_grad()) leaves.push_back(inputs.back());
    }
    variable_list outputs;
    {
      torch::AutoGradMode enable(true);
      outputs = holder->fn(inputs);
    }
    variable_list roots, seeds;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (grad_outputs[i].defined() && outputs[i].requires_grad()) {
        roots.push_back(outputs[i]);
        seeds.push_back(grad_outputs[i]);
      }
    }
    variable_list leaf_grads = roots.empty() ? variable_list(leaves.size())
                                             : torch::autograd::grad(roots, leaves, seeds, false, false, true);
    variable_list result{torch::Tensor()};  // for fn itself
    size_t next = 0;
    for (const auto& t : inputs) result.push_back(t.requires_grad() ? leaf_grads[next++] : torch::Tensor());
    return result;
  }
};

}  // namespace

std::vector<torch::Tensor> recompute_in_backward(const TensorFunction& fn, const std::vector<torch::Tensor>& inputs) {
  return RecomputeFn::apply(fn, torch::TensorList(inputs));
}

}  // namespace loom
