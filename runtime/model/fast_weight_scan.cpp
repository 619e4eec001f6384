#include "runtime/model/fast_weight_scan.h"

#include <algorithm>
#include <map>
#include <optional>

#include "kernels/newton_schulz.h"
#include "runtime/core/error.h"
#include "runtime/model/recompute.h"

namespace loom {
namespace {

torch::Tensor row_norms(const torch::Tensor& w) { return torch::linalg_vector_norm(w, 2, {-1}, true); }

// Rows of w rescaled to the given norms. A floor rather than the reference's added epsilon keeps an
// update of zero an exact identity.
torch::Tensor renormalise(const torch::Tensor& w, const torch::Tensor& norms) {
  return w * (norms / row_norms(w).clamp_min(1e-5));
}

// One chunk of one document: its tokens on this rank are rows [begin, end) (contiguous: a rank's
// tokens keep the sequence's order), `count` its tokens on all ranks.
struct Chunk {
  int64_t begin = 0, end = 0, count = 0;
  bool first = false, last = false;  // of its document
};

// The chunks of every document in sequence order. Chunk c of a document holds the tokens at
// positions first + [c C, (c + 1) C), first being the document's first position in the sequence.
std::vector<Chunk> plan_chunks(const torch::Tensor& doc_ids, const FastWeightSync* sync, int64_t chunk_size) {
  const int64_t n = doc_ids.size(0);
  // Without sync this rank holds the whole sequence: positions are offsets inside each document.
  const auto local_doc = doc_ids.accessor<int64_t, 1>();
  auto offsets = torch::zeros({n}, torch::kInt64);
  auto offset = offsets.accessor<int64_t, 1>();
  for (int64_t i = 1; i < n; ++i) offset[i] = local_doc[i] == local_doc[i - 1] ? offset[i - 1] + 1 : 0;
  const auto all_doc_t = sync ? sync->doc_ids : doc_ids;
  const auto all_pos_t = sync ? sync->positions : offsets;
  const auto local_pos_t = sync ? sync->local_positions : offsets;
  const auto all_doc = all_doc_t.accessor<int64_t, 1>(), all_pos = all_pos_t.accessor<int64_t, 1>();
  const auto local_pos = local_pos_t.accessor<int64_t, 1>();

  std::map<int64_t, int64_t> first_pos;        // document -> its first position
  std::map<std::pair<int64_t, int64_t>, size_t> index;  // (document, chunk) -> plan entry
  std::vector<Chunk> plan;
  for (int64_t i = 0; i < all_doc_t.size(0); ++i) {
    if (all_doc[i] < 0) continue;
    const int64_t first = first_pos.emplace(all_doc[i], all_pos[i]).first->second;
    const auto key = std::make_pair(all_doc[i], (all_pos[i] - first) / chunk_size);
    const auto [it, fresh] = index.emplace(key, plan.size());
    if (fresh) plan.push_back({0, 0, 0, key.second == 0, false});
    ++plan[it->second].count;
  }
  for (size_t c = 0; c < plan.size(); ++c) plan[c].last = c + 1 == plan.size() || plan[c + 1].first;
  for (int64_t i = 0; i < n; ++i) {
    if (local_doc[i] < 0) continue;
    const int64_t first = first_pos.at(local_doc[i]);
    Chunk& c = plan[index.at({local_doc[i], (local_pos[i] - first) / chunk_size})];
    if (c.end == c.begin) c.begin = c.end = i;
    check(c.end == i, "fast weights: a chunk's tokens are not contiguous on this rank");
    c.end = i + 1;
  }
  return plan;
}

// The rows of every chunk this rank holds, as pieces of one split per input. A narrow per chunk would
// have each chunk's backward build a gradient the size of the whole input (zeros plus the chunk's
// rows) and add it to the others: O(tokens) per chunk, which on an H200 took more time per chunk
// than the chunk's matrix products. The split's backward joins the pieces' gradients in one pass.
class ChunkRows {
 public:
  // Inputs [B, rows, ...], cut along dim 1 (an undefined input stays undefined).
  ChunkRows(const std::vector<Chunk>& plan, std::vector<torch::Tensor> inputs) : inputs_(std::move(inputs)) {
    const int64_t rows = inputs_[0].size(1);
    std::vector<int64_t> cuts{0, rows};
    for (const Chunk& c : plan) {
      if (c.end > c.begin) cuts.insert(cuts.end(), {c.begin, c.end});
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    std::vector<int64_t> sizes;
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      piece_at_.emplace(cuts[i], i);
      sizes.push_back(cuts[i + 1] - cuts[i]);
    }
    for (const auto& t : inputs_) pieces_.push_back(t.defined() ? t.split_with_sizes(sizes, 1) : std::vector<torch::Tensor>());
  }

  // Chunk c's rows of every input; a chunk with no rows here gets zero rows that autograd does not
  // trace back to the input.
  std::vector<torch::Tensor> of(const Chunk& c) const {
    std::vector<torch::Tensor> rows;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      if (!inputs_[i].defined()) {
        rows.emplace_back();
      } else if (c.end == c.begin) {
        auto shape = inputs_[i].sizes().vec();
        shape[1] = 0;
        rows.push_back(torch::empty(shape, inputs_[i].options()));
      } else {
        rows.push_back(pieces_[i][piece_at_.at(c.begin)]);
      }
    }
    return rows;
  }

 private:
  std::vector<torch::Tensor> inputs_;
  std::vector<std::vector<torch::Tensor>> pieces_;  // per input
  std::map<int64_t, size_t> piece_at_;              // first row -> piece
};

// This rank's part of one chunk's update, summed over the ranks in one all-reduce. A rank holding
// none of the chunk's tokens runs the same operations on zero rows: every rank then builds the same
// autograd graph, so the backward issues its collectives in the same order everywhere.
// k, v, rates and β: this rank's rows of the chunk; `count`: the chunk's tokens on all ranks.
std::pair<FastWeights, torch::Tensor> summed_directions(const FastWeightState& s, const torch::Tensor& k, const torch::Tensor& v,
                                                        const torch::Tensor& lr0, const torch::Tensor& lr1,
                                                        const torch::Tensor& lr2, const torch::Tensor& beta, int64_t count,
                                                        const FastWeightSync& sync) {
  const FastWeights d = descent_directions(s.w, k, v, lr0, lr1, lr2);
  std::vector<torch::Tensor> parts{d.w0.flatten(), d.w1.flatten(), d.w2.flatten()};
  if (beta.defined()) parts.push_back(beta.sum(1));
  const auto total = sync.all_reduce(torch::cat(parts));
  const auto piece = [&](int64_t begin, const torch::Tensor& like) { return total.narrow(0, begin, like.numel()).view_as(like); };
  const int64_t n0 = d.w0.numel(), n1 = d.w1.numel(), n2 = d.w2.numel();
  return {{piece(0, d.w0), piece(n0, d.w1), piece(n0 + n1, d.w2)},
          beta.defined() ? total.narrow(0, n0 + n1 + n2, s.w.w0.size(0)) / static_cast<double>(count) : torch::Tensor()};
}

// One chunk as a function of tensors (what recompute_in_backward takes): apply, then update; with
// `sync`, the update sums every rank's part (`count`: the chunk's tokens on all ranks).
// inputs: w0, w1, w2, norms0..2, [velocity0..2,] q, k, v, lr0, lr1, lr2[, β];
// outputs: the chunk's output, then w0, w1, w2[, velocity0..2] after the update.
// The sync is copied in: the function outlives the forward when it is recomputed in the backward.
TensorFunction chunk_step(bool momentum, const FastWeightScanOptions& o, const FastWeightSync* sync, int64_t count) {
  const std::optional<FastWeightSync> shared = sync ? std::optional<FastWeightSync>(*sync) : std::nullopt;
  return [momentum, o, shared, count](const std::vector<torch::Tensor>& in) {
    FastWeightState s{{in[0], in[1], in[2]}, {}, {in[3], in[4], in[5]}};
    size_t i = 6;
    if (momentum) {
      s.velocity = {in[6], in[7], in[8]};
      i = 9;
    }
    std::vector<torch::Tensor> out{apply_fast_weights(s.w, in[i])};
    const torch::Tensor beta = momentum ? in[i + 6] : torch::Tensor();
    if (shared) {
      const auto [d, beta_mean] = summed_directions(s, in[i + 1], in[i + 2], in[i + 3], in[i + 4], in[i + 5], beta, count, *shared);
      apply_update(s, d, beta_mean, o);
    } else {
      update_fast_weights(s, in[i + 1], in[i + 2], in[i + 3], in[i + 4], in[i + 5], beta, o);
    }
    out.insert(out.end(), {s.w.w0, s.w.w1, s.w.w2});
    if (momentum) out.insert(out.end(), s.velocity.begin(), s.velocity.end());
    return out;
  };
}

}  // namespace

FastWeightState initial_fast_weight_state(const FastWeights& initial, bool momentum) {
  FastWeightState s{initial, {}, {row_norms(initial.w0), row_norms(initial.w1), row_norms(initial.w2)}};
  if (momentum) s.velocity = {torch::zeros_like(initial.w0), torch::zeros_like(initial.w1), torch::zeros_like(initial.w2)};
  return s;
}

void apply_update(FastWeightState& s, const FastWeights& d, const torch::Tensor& beta_mean, const FastWeightScanOptions& o) {
  std::array<torch::Tensor, 3> delta{d.w0, d.w1, d.w2};
  std::array<torch::Tensor*, 3> weights{&s.w.w0, &s.w.w1, &s.w.w2};
  for (size_t m = 0; m < 3; ++m) {
    if (beta_mean.defined()) {
      delta[m] = delta[m] + beta_mean.view({-1, 1, 1}) * s.velocity[m];
      s.velocity[m] = delta[m];
    }
    if (o.muon) delta[m] = newton_schulz(delta[m]);
    *weights[m] = *weights[m] + delta[m];
    if (o.weight_norm) *weights[m] = renormalise(*weights[m], s.norms[m]);
  }
}

void update_fast_weights(FastWeightState& s, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& lr0,
                         const torch::Tensor& lr1, const torch::Tensor& lr2, const torch::Tensor& momentum,
                         const FastWeightScanOptions& o) {
  apply_update(s, descent_directions(s.w, k, v, lr0, lr1, lr2), momentum.defined() ? momentum.mean(1) : torch::Tensor(), o);
}

torch::Tensor fast_weight_scan(const FastWeights& initial, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& lr0, const torch::Tensor& lr1,
                               const torch::Tensor& lr2, const torch::Tensor& momentum, const torch::Tensor& doc_ids,
                               const FastWeightScanOptions& o, const FastWeightSync* sync) {
  const bool with_momentum = momentum.defined();
  const FastWeightState start_state = initial_fast_weight_state(initial, with_momentum);
  std::vector<torch::Tensor> outputs;
  int64_t written = 0;  // rows of this rank output so far; rows of no document (padding) stay 0
  const auto pad_to = [&](int64_t row) {
    if (row > written) outputs.push_back(torch::zeros({q.size(0), row - written, q.size(2)}, q.options()));
    written = row;
  };
  FastWeightState s = start_state;
  const std::vector<Chunk> plan = plan_chunks(doc_ids, sync, o.chunk);
  const ChunkRows cut(plan, {q, k, v, lr0, lr1, lr2, momentum});
  // With sync a rank also runs the chunks it holds no token of, on zero rows.
  for (const Chunk& c : plan) {
    if (c.first) s = start_state;
    const std::vector<torch::Tensor> rows = cut.of(c);  // q, k, v, lr0, lr1, lr2, β of this chunk
    const bool mine = c.end > c.begin;
    if (mine) pad_to(c.begin);
    if (c.last) {
      outputs.push_back(apply_fast_weights(s.w, rows[0]));
    } else {
      std::vector<torch::Tensor> in{s.w.w0, s.w.w1, s.w.w2, s.norms[0], s.norms[1], s.norms[2]};
      if (with_momentum) in.insert(in.end(), s.velocity.begin(), s.velocity.end());
      in.insert(in.end(), rows.begin(), rows.begin() + 6);
      if (with_momentum) in.push_back(rows[6]);
      const TensorFunction step = chunk_step(with_momentum, o, sync, c.count);
      const auto out = o.recompute ? recompute_in_backward(step, in) : step(in);
      outputs.push_back(out[0]);
      s.w = {out[1], out[2], out[3]};
      if (with_momentum) s.velocity = {out[4], out[5], out[6]};
    }
    if (mine) written = c.end;
  }
  pad_to(q.size(1));
  return torch::cat(outputs, 1);
}

}  // namespace loom
