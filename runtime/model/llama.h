// The Llama architecture: token embedding, N x (RMSNorm -> attention with rotate-half RoPE and GQA
// -> residual, RMSNorm -> SwiGLU MLP -> residual), final RMSNorm, LM head (tied or not).
//
// Modules are registered under Hugging Face's names, so named_parameters() gives exactly
// "model.layers.{i}.self_attn.q_proj.weight", ... and export is a rename-free copy.
//
// The forward takes one packed sequence: token ids, positions inside each document, and document
// ids (-1 for padding). Attention never crosses a document; RoPE uses the positions given.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "parallel/attention/attend_fn.h"
#include "runtime/core/config.h"
#include "runtime/core/named_tensors.h"
#include "runtime/model/lact_layer.h"

namespace loom {

// Keys and values of the tokens seen so far, per layer, for generation.
struct KvCache {
  std::vector<torch::Tensor> k, v;           // [Hkv, T, d] per layer (after RoPE)
  std::vector<LactCache> lact;               // per layer; used by LaCT layers only
  torch::Tensor positions;                   // int64 [T]
  int64_t length() const { return positions.defined() ? positions.size(0) : 0; }
};

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& c, int64_t layer);
  // With a cache, x holds only new tokens; their K/V are appended and they attend to all cached ones.
  // `attend` replaces local attention (sequence parallelism: x holds this rank's shard).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& positions, const torch::Tensor& doc_ids,
                        torch::Tensor* cache_k = nullptr, torch::Tensor* cache_v = nullptr,
                        const torch::Tensor& cache_positions = {}, const AttendFn* attend = nullptr);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t layer_, n_heads_, n_kv_heads_, head_dim_;
  double rope_theta_;
};
TORCH_MODULE(Attention);

class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& c, int64_t layer);
  Attention self_attn{nullptr};  // exactly one of self_attn and lact is set
  LactLayer lact{nullptr};
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

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

  // tokens, positions, doc_ids: int64 [N] -> logits [N, vocab]. With `attend` (sequence
  // parallelism) the inputs are this rank's shard and attention goes through it.
  // LaCT layers under sequence parallelism also need `sync` (their fast-weight updates over the ranks).
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions, const torch::Tensor& doc_ids,
                        const AttendFn* attend = nullptr, const FastWeightSync* sync = nullptr);
  // forward = logits(hidden(...)): the two halves, for callers that need the layers without the
  // LM head (chunk-wise backprop's first pass keeps only K/V).
  torch::Tensor hidden(const torch::Tensor& tokens, const torch::Tensor& positions, const torch::Tensor& doc_ids,
                       const AttendFn* attend = nullptr, const FastWeightSync* sync = nullptr);
  torch::Tensor logits(const torch::Tensor& hidden);

  // Generation: runs the new tokens against the cache (which they then join) -> logits [n, vocab].
  torch::Tensor forward_cached(const torch::Tensor& tokens, const torch::Tensor& positions, KvCache& cache);

  const ModelConfig& config() const { return config_; }
  int64_t num_parameters() const;
  NamedTensors parameter_list() const;  // under their Hugging Face names
  // Matmul FLOPs of one token's forward outside attention scores (2 per multiply-add).
  double dense_flops_per_token() const;

  LlamaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};

 private:
  torch::Tensor run(const torch::Tensor& tokens, const torch::Tensor& positions, const torch::Tensor& doc_ids,
                    KvCache* cache, const AttendFn* attend, const FastWeightSync* sync);
  ModelConfig config_;
};
TORCH_MODULE(Llama);

}  // namespace loom
