// The remap's two all-to-alls (remap_plan.h): from the attention layout to the token-balanced
// layout the linear layers run on, and back. Each is differentiable, its backward the other
// direction's all-to-all, so gradients are exact. Rows keep their order within each part: rank r's
// linear layout holds the rows each rank sent it in rank order, its own kept rows in its own place.
#pragma once
#include <torch/torch.h>

#include "parallel/comm/communicator.h"
#include "parallel/placement/remap_plan.h"

namespace loom {

// x [plan.before[rank], ...] -> [plan.after[rank], ...]; `comm` is the group the plan is over.
torch::Tensor to_linear_layout(const torch::Tensor& x, const RemapPlan& plan, Communicator& comm);
// The inverse: y [plan.after[rank], ...] -> [plan.before[rank], ...].
torch::Tensor to_attention_layout(const torch::Tensor& y, const RemapPlan& plan, Communicator& comm);

}  // namespace loom
