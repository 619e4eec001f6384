// The Llama architecture: token embedding, N decoder layers (decoder_layer.h: attention with
// rotate-half RoPE and GQA, SwiGLU MLP, RMSNorm at every residual boundary), final RMSNorm, LM head
// (tied or not). Some layers may be LaCT layers (model.lact).
//
// Modules are registered under Hugging Face's names, so named_parameters() gives exactly
// "model.layers.{i}.self_attn.q_proj.weight", ... and export is a rename-free copy.
//
// The forward takes one packed sequence, or this rank's shard of it (SequenceShard): token ids,
// positions inside each document, document ids (-1 for padding). Attention never crosses a
// document; RoPE uses the positions given. How attention and the residual boundaries are computed
// is installed from outside (parallelize.h); the model's code does not change with the layout.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <vector>

#include "runtime/core/config.h"
#include "runtime/core/named_tensors.h"
#include "parallel/comm/communicator.h"
#include "parallel/tensor/tensor_shard.h"
#include "runtime/model/decoder_layer.h"
#include "runtime/model/token_weave.h"

namespace loom {

// Keys and values of the tokens seen so far, per layer, for generation.
struct KvCache {
  std::vector<LayerCache> layers;
  torch::Tensor positions;  // int64 [T]
  int64_t length() const { return positions.defined() ? positions.size(0) : 0; }
};

class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const ModelConfig& c);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

class LlamaImpl : public torch::nn::Module {
 public:
  explicit LlamaImpl(const ModelConfig& c);

  // input's tokens -> logits [n, vocab].
  torch::Tensor forward(const SequenceShard& input);
  // One whole packed sequence on this rank: tokens, positions, doc_ids int64 [N] -> logits [N, vocab].
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions, const torch::Tensor& doc_ids);
  // forward = logits(hidden(...)): the final normalised hidden states [n, D], and the LM head, for
  // callers that need the layers without the head (chunk-wise backprop's first pass keeps only K/V).
  torch::Tensor hidden(const SequenceShard& input);
  torch::Tensor logits(const torch::Tensor& hidden);
  // The summed loss of input's labelled tokens (lm_loss.h): through the whole logits, or with
  // head_rows > 0 that many rows of them at a time; vocab-parallel when the vocabulary is split.
  torch::Tensor loss(const SequenceShard& input, int64_t head_rows = 0);
  // The LM head's weight [vocab, D]: its own, or the embedding's when tied.
  torch::Tensor head_weight() const;

  // Generation: runs the new tokens against the cache (which they then join) -> logits [n, vocab].
  torch::Tensor forward_cached(const torch::Tensor& tokens, const torch::Tensor& positions, KvCache& cache);

  DecoderLayerImpl& layer(int64_t i) { return *model->layers->ptr<DecoderLayerImpl>(i); }
  int64_t num_layers() const { return static_cast<int64_t>(model->layers->size()); }
  // Every residual boundary (the embedding's and both of each layer's) goes through `rn`.
  void set_residual_norm(std::shared_ptr<ResidualNorm> rn);
  // Tensor parallelism (parallelize.h): the embedding's and the LM head's rows are this rank's
  // `shard` of the vocabulary; the embedding then gives partial sums, the loss is vocab-parallel
  // and logits() gathers the slices from the ranks of `tp`.
  void split_vocabulary(const TensorShard& shard, Communicator& tp);
  // Token splitting (runtime/model/token_weave.h): the layers run interleaved over two halves of the tokens
  // wherever the plan splits them.
  void weave_tokens(const TokenWeavePlan& plan) { weave_ = plan; }
  // This model as the interleaved layers see it.
  WovenModel woven();

  // The embedding of `tokens` (this rank's partial sums when the vocabulary is split), and the norm
  // the residual boundary after layer `layer` applies: the next layer's input norm, or the final one.
  torch::Tensor embed(const torch::Tensor& tokens);
  RMSNormImpl& norm_after(int64_t layer);

  const ModelConfig& config() const { return config_; }
  torch::Device device() const { return model->embed_tokens->weight.device(); }
  int64_t num_parameters() const;
  NamedTensors parameter_list() const;  // under their Hugging Face names
  // Matmul FLOPs of one token's forward outside attention scores (2 per multiply-add).
  double dense_flops_per_token() const;
  // Training FLOPs of one whole packed sequence (forward + backward, 3x the forward): dense layers
  // for its real tokens plus attention over its visible pairs.
  double training_flops(const PackedTensors& batch) const;

  LlamaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};

 private:
  Residual run_layer(int64_t layer, const Residual& in, const SequenceShard& input);
  ModelConfig config_;
  std::shared_ptr<ResidualNorm> residual_norm_;  // the embedding's boundary
  TensorShard vocab_;                            // not split() without tensor parallelism
  Communicator* tp_ = nullptr;
  std::optional<TokenWeavePlan> weave_;
};
TORCH_MODULE(Llama);

}  // namespace loom
