#include "runtime/model/lm_loss.h"

#include "runtime/core/error.h"
#include "runtime/core/precision.h"

namespace loom {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// One chunk's summed loss, and with `grads` its gradient of the logits (softmax minus the one-hot
// label on labelled rows, zero elsewhere), in the accumulation dtype.
struct ChunkLoss {
  torch::Tensor loss, dlogits;
};

ChunkLoss chunk_loss(const torch::Tensor& logits_in, const torch::Tensor& labels, bool grads) {
  const auto logits = logits_in.to(accumulation_dtype(logits_in.scalar_type()));
  const auto labelled = labels >= 0;
  const auto target = labels.clamp_min(0).unsqueeze(1);
  const auto lse = torch::logsumexp(logits, -1, true);
  const auto picked = logits.gather(1, target);
  ChunkLoss c{((lse - picked).squeeze(1) * labelled).sum(), {}};
  if (grads) {
    auto p = torch::exp(logits - lse);
    p.scatter_add_(1, target, -torch::ones_like(picked));
    c.dlogits = p * labelled.unsqueeze(1);
  }
  return c;
}

// The loss over every chunk of rows, and with `grads` the gradients of hidden and weight.
struct HeadLoss {
  torch::Tensor loss, dhidden, dweight;
};

HeadLoss head_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels, int64_t rows,
                   bool grads) {
  const auto acc = accumulation_dtype(hidden.scalar_type());
  HeadLoss r{torch::zeros({}, hidden.options().dtype(acc)), {}, {}};
  torch::Tensor dweight;
  if (grads) {
    r.dhidden = torch::empty_like(hidden);
    dweight = torch::zeros(weight.sizes(), weight.options().dtype(acc));
  }
  for (int64_t start = 0; start < hidden.size(0); start += rows) {
    const int64_t n = std::min(rows, hidden.size(0) - start);
    const auto h = hidden.narrow(0, start, n);
    const ChunkLoss c = chunk_loss(torch::matmul(h, weight.t()), labels.narrow(0, start, n), grads);
    r.loss += c.loss;
    if (!grads) continue;
    // Back through the product in the model's dtype, as autograd would.
    const auto d = c.dlogits.to(hidden.scalar_type());
    r.dhidden.narrow(0, start, n).copy_(torch::matmul(d, weight));
    dweight += torch::matmul(d.t(), h).to(acc);
  }
  if (grads) r.dweight = dweight.to(weight.scalar_type());
  return r;
}

struct ChunkedHeadLossFn : torch::autograd::Function<ChunkedHeadLossFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& labels, int64_t rows) {
    const HeadLoss r = head_loss(hidden, weight, labels, rows, true);
    ctx->save_for_backward({r.dhidden, r.dweight});
    return r.loss;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& scale = grads[0];
    return {saved[0] * scale.to(saved[0].scalar_type()), saved[1] * scale.to(saved[1].scalar_type()), {}, {}};
  }
};

}  // namespace

torch::Tensor summed_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto wide = accumulation_dtype(logits.scalar_type());
  return torch::nn::functional::cross_entropy(
      logits.to(wide), labels,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1).reduction(torch::kSum));
}

torch::Tensor chunked_head_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
                                int64_t rows) {
  check(rows > 0, "chunked_head_loss: rows must be positive");
  const bool grads = torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  return grads ? ChunkedHeadLossFn::apply(hidden, weight, labels, rows) : head_loss(hidden, weight, labels, rows, false).loss;
}

}  // namespace loom
