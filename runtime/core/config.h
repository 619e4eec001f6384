// The experiment configuration: YAML -> typed structs, validated once at start-up.
//
// Precedence: built-in defaults < YAML file (which may name a `base:` file to extend) < `--set a.b=v`.
// Unknown keys, wrong types, out-of-range and inconsistent values are errors that name the key, the
// file and line it came from, and what is allowed. Every key is declared once, in visit_fields
// (config.cpp); reading, writing and listing keys all walk that one declaration.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace loom {

struct RunConfig {
  std::string dir = "runs/loom";
  int64_t seed = 1234;
  bool overwrite = false;    // allow reusing a run dir that holds a different run
  std::string init_from;     // checkpoint dir whose weights start a fresh run
};

// LaCT layers (Zhang et al., "Test-Time Training Done Right", 2025): window attention and fast weights sharing one QKV projection.
struct LactConfig {
  int64_t every = 0;         // 0: none; k: layers k-1, 2k-1, ... are LaCT (1: all of them)
  int64_t chunk = 2048;      // tokens per fast-weight update
  int64_t window = 2048;     // sliding-window attention: a token sees itself and window-1 before it
  int64_t heads = 4;         // fast-weight heads (d_model / heads each)
  int64_t inter_multi = 1;   // fast-weight hidden size = head size x inter_multi
  bool muon = false;         // orthogonalise each update (Newton-Schulz, LaCT's five triples)
  bool momentum = true;      // per-token β from the input, averaged per chunk
  double base_lr = 1e-3;     // the rates start near it: softplus(Linear(x) + softplus^-1(base_lr))
  int64_t lowrank = 32;      // initial W0, W2 = L R + 0.5 I of this rank; 0: full-rank
  bool checkpoint = false;   // keep per-chunk fast weights, recompute each update in the backward
  bool rope = true;          // RoPE on the fast queries and keys (the reference; false: its ttt_nope)
};

struct ModelConfig {
  int64_t vocab_size = 259;  // byte-level tokenizer: 256 bytes + BOS, EOS, PAD
  int64_t d_model = 128;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 4;
  int64_t d_ff = 0;          // 0: the Llama rule, about 8/3 d_model rounded up to a multiple of 64
  int64_t max_seq_len = 4096;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  bool tie_embeddings = false;
  LactConfig lact;

  bool is_lact_layer(int64_t layer) const { return lact.every > 0 && (layer + 1) % lact.every == 0; }
  int64_t head_dim() const { return d_model / n_heads; }
  int64_t ffn_dim() const;
};

struct DataConfig {
  std::string path;
  double val_fraction = 0.05;
  std::string loss_on = "all";  // all | answers (only the answer spans of task data carry loss)
};

// SpaCO: which chunks the reverse sweep of chunk-wise backprop visits (optim/chunkwise).
struct SpacoConfig {
  std::string sampling = "bernoulli";  // bernoulli (each chunk kept with probability budget) | fixed
  double budget = 0.125;               // fraction of the chunks kept: q, or t = round(budget x chunks)
  std::string compensation = "paper";  // fixed sampling only: paper (x min(k/t, cap) per hop) | none
  double cap = 2;                      // the paper's cap on k/t
};

struct TrainConfig {
  int64_t steps = 100;
  int64_t seq_len = 1024;          // tokens in one packed micro-batch
  int64_t tokens_per_step = 1024;  // a multiple of seq_len; the ratio is the accumulation count
  double lr = 1e-3;
  double min_lr_ratio = 0.1;       // cosine decays to lr * min_lr_ratio
  int64_t warmup_steps = 10;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;          // 0 disables clipping
  std::string optimizer = "adamw"; // adamw | muon (Muon on the layers' matrices, AdamW on the rest)
  double muon_momentum = 0.95;     // Muon's (Nesterov) momentum
  std::string dtype = "float32";   // float32 | float64 (exactness tests) | bfloat16 (GPUs)
  std::string device = "auto";     // auto (a GPU where one is visible) | cpu | cuda
  std::string reduce_dtype = "auto";  // gradient reduction: auto (the master weights' dtype) | float32 | bfloat16
  int64_t loss_chunk = 0;          // rows of logits at a time in the LM head and loss; 0: all at once
  // none | selective: recompute the MLP's element-wise product | full: each layer's whole forward
  std::string activation_checkpoint = "none";
  std::string on_nan = "stop";     // stop | skip: what a non-finite loss does
  int64_t threads = 0;             // intra-op threads; 0 = LibTorch's default
  std::string strategy = "full";   // full | seco | spaco: backprop over the whole sequence or chunk by chunk
  int64_t chunk_size = 1024;       // seco/spaco: tokens per chunk
  SpacoConfig spaco;
};

struct ParallelConfig {
  static constexpr int64_t kAuto = 0;
  int64_t dp = kAuto;              // data-parallel degree; auto = world / (sp x tp)
  int64_t sp = 1;                  // sequence-parallel degree
  int64_t tp = 1;                  // tensor-parallel degree
  // TokenWeave's token splitting with tp > 1: auto splits sequences of at least
  // token_weave_min_tokens tokens, on splits every sequence it can, off never splits.
  std::string token_weave = "auto";
  int64_t token_weave_min_tokens = 1024;
  std::string attention = "auto";  // local | ring | token_ring | auto (local when sp = 1)
  // Where a step's sequences are computed: uniform splits every packed sequence over the sp group;
  // zeppelin places each document of the step on one rank or a ring of the dp x sp ranks
  // (parallel/placement/), with no rank holding more than seq_len / sp tokens of one.
  std::string placement = "uniform";
  std::string topology;  // zeppelin: the cluster file (configs/topology/); empty: one node of dp x sp ranks
  // ZeRO over the dp x sp replicas: 0 every rank holds the whole optimizer; 1 each holds 1/n of the
  // master weights and AdamW state (with Muon: the state of 1/n of the parameters, whole); 2 also
  // reduce-scatters the gradients (AdamW only).
  int64_t zero = 0;
  double bucket_mb = 25;           // gradient all-reduce bucket size
  double timeout_s = 600;          // a collective that takes longer aborts the job
};

struct CheckpointConfig {
  int64_t interval = 0;  // steps between checkpoints; 0 = only at the end
  int64_t keep_last = 3;
};

struct LogConfig {
  int64_t interval = 1;  // steps between progress lines
  bool progress = true;
  bool tensorboard = false;  // also TensorBoard event files in <run.dir>/tensorboard
  double peak_tflops = 0;    // one rank's peak dense FLOP/s (in TFLOP/s) for the MFU reported; 0: none
};

struct EvalConfig {
  int64_t interval = 0;  // steps between evaluations; 0 = never during training
  int64_t max_docs = 64;
};

struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LogConfig log;
  EvalConfig eval;

  // Where each key got its value ("file:line", "--set" or "default"), for error messages.
  std::map<std::string, std::string> origin;

  int64_t accumulation_steps() const { return train.tokens_per_step / train.seq_len; }
  // "file:line: key" (or "default: key"), the prefix of every message about that key's value.
  std::string where(const std::string& key) const;
};

// Reads `path` (following `base:` chains), applies `--set key=value` overrides and validates.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The same from YAML text (the resolved config stored in a checkpoint); `origin_name` labels errors.
Config parse_config(const std::string& yaml_text, const std::string& origin_name,
                    const std::vector<std::string>& overrides = {});

// Every key with its value, as YAML that parse_config reads back to the same Config.
std::string to_yaml(const Config& config);

// All declared keys, in declaration order.
std::vector<std::string> config_keys();

// Every key with its default and what it allows, as text ("[1, 1024]", "adamw, muon", "text").
struct KeyInfo {
  std::string key, default_value, allowed;
};
std::vector<KeyInfo> describe_keys();

}  // namespace loom
