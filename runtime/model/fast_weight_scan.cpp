#include "runtime/model/fast_weight_scan.h"

#include "optim/muon.h"
#include "runtime/model/recompute.h"

namespace loom {
namespace {

torch::Tensor row_norms(const torch::Tensor& w) { return torch::linalg_vector_norm(w, 2, {-1}, true); }

// Rows of w rescaled to the given norms. A floor rather than the reference's added epsilon keeps an
// update of zero an exact identity.
torch::Tensor renormalise(const torch::Tensor& w, const torch::Tensor& norms) {
  return w * (norms / row_norms(w).clamp_min(1e-5));
}

// [begin, end) of each document in doc_ids (consecutive runs of one id).
std::vector<std::pair<int64_t, int64_t>> documents(const torch::Tensor& doc_ids) {
  const auto d = doc_ids.accessor<int64_t, 1>();
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t i = 0; i < doc_ids.size(0); ++i) {
    if (i == 0 || d[i] != d[i - 1]) out.emplace_back(i, i);
    out.back().second = i + 1;
  }
  return out;
}

}  // namespace

FastWeightState initial_fast_weight_state(const FastWeights& initial) {
  return {initial, {}, {row_norms(initial.w0), row_norms(initial.w1), row_norms(initial.w2)}};
}

void update_fast_weights(FastWeightState& s, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& lr0,
                         const torch::Tensor& lr1, const torch::Tensor& lr2, const torch::Tensor& momentum,
                         const FastWeightScanOptions& o) {
  const FastWeights d = descent_directions(s.w, k, v, lr0, lr1, lr2);
  std::array<torch::Tensor, 3> delta{d.w0, d.w1, d.w2};
  std::array<torch::Tensor*, 3> weights{&s.w.w0, &s.w.w1, &s.w.w2};
  for (size_t m = 0; m < 3; ++m) {
    if (momentum.defined()) {
      if (s.velocity[m].defined()) delta[m] = delta[m] + momentum.mean(1).view({-1, 1, 1}) * s.velocity[m];
      s.velocity[m] = delta[m];
    }
    if (o.muon) delta[m] = newton_schulz(delta[m]);
    *weights[m] = *weights[m] + delta[m];
    if (o.weight_norm) *weights[m] = renormalise(*weights[m], s.norms[m]);
  }
}

namespace {

// One chunk as a function of tensors (what recompute_in_backward takes): apply, then update.
// inputs: w0, w1, w2, norms0..2, [velocity0..2,] q, k, v, lr0, lr1, lr2[, β];
// outputs: the chunk's output, then w0, w1, w2[, velocity0..2] after the update.
TensorFunction chunk_step(bool momentum, const FastWeightScanOptions& o) {
  return [momentum, o](const std::vector<torch::Tensor>& in) {
    FastWeightState s{{in[0], in[1], in[2]}, {}, {in[3], in[4], in[5]}};
    size_t i = 6;
    if (momentum) {
      s.velocity = {in[6], in[7], in[8]};
      i = 9;
    }
    std::vector<torch::Tensor> out{apply_fast_weights(s.w, in[i])};
    update_fast_weights(s, in[i + 1], in[i + 2], in[i + 3], in[i + 4], in[i + 5], momentum ? in[i + 6] : torch::Tensor(), o);
    out.insert(out.end(), {s.w.w0, s.w.w1, s.w.w2});
    if (momentum) out.insert(out.end(), s.velocity.begin(), s.velocity.end());
    return out;
  };
}

}  // namespace

torch::Tensor fast_weight_scan(const FastWeights& initial, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& lr0, const torch::Tensor& lr1,
                               const torch::Tensor& lr2, const torch::Tensor& momentum, const torch::Tensor& doc_ids,
                               const FastWeightScanOptions& o) {
  const bool with_momentum = momentum.defined();
  const TensorFunction step = chunk_step(with_momentum, o);
  FastWeightState start_state = initial_fast_weight_state(initial);
  if (with_momentum) {
    start_state.velocity = {torch::zeros_like(initial.w0), torch::zeros_like(initial.w1), torch::zeros_like(initial.w2)};
  }
  std::vector<torch::Tensor> outputs;
  for (const auto& [begin, end] : documents(doc_ids)) {
    FastWeightState s = start_state;
    for (int64_t start = begin; start < end; start += o.chunk) {
      const int64_t n = std::min(o.chunk, end - start);
      const auto slice = [&](const torch::Tensor& t) { return t.narrow(1, start, n); };
      if (start + n >= end) {  // the document's last chunk only reads
        outputs.push_back(apply_fast_weights(s.w, slice(q)));
        break;
      }
      std::vector<torch::Tensor> in{s.w.w0, s.w.w1, s.w.w2, s.norms[0], s.norms[1], s.norms[2]};
      if (with_momentum) in.insert(in.end(), s.velocity.begin(), s.velocity.end());
      in.insert(in.end(), {slice(q), slice(k), slice(v), slice(lr0), slice(lr1), slice(lr2)});
      if (with_momentum) in.push_back(slice(momentum));
      const auto out = o.recompute ? recompute_in_backward(step, in) : step(in);
      outputs.push_back(out[0]);
      s.w = {out[1], out[2], out[3]};
      if (with_momentum) s.velocity = {out[4], out[5], out[6]};
    }
  }
  return torch::cat(outputs, 1);
}

}  // namespace loom
