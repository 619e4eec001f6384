// loom export / loom import: checkpoints to and from the formats inference engines and model hubs use.
#include <cstdio>
#include <filesystem>

#include "launch/commands.h"
#include "runtime/core/error.h"
#include "runtime/export/checkpoint_source.h"
#include "runtime/export/gguf_export.h"
#include "runtime/export/hf_export.h"
#include "runtime/export/hf_import.h"

namespace loom {

int run_export(const ExportArgs& a) {
  check(!std::filesystem::exists(a.out), "'" + a.out + "' already exists: choose a new --out (an export never overwrites)");
  const torch::ScalarType dtype = export_dtype(a.dtype);
  if (a.format == "hf") {
    check(a.shard_mb > 0, "--shard-mb must be positive");
    export_hf(a.checkpoint, a.out, dtype, static_cast<uint64_t>(a.shard_mb * (1 << 20)));
    std::printf("wrote %s: a Hugging Face Llama directory (transformers: LlamaForCausalLM.from_pretrained, "
                "AutoTokenizer.from_pretrained)\n", a.out.c_str());
  } else {
    export_gguf(a.checkpoint, a.out, dtype);
    std::printf("wrote %s: GGUF v3, architecture llama (llama.cpp: llama-cli -m %s)\n", a.out.c_str(), a.out.c_str());
  }
  return 0;
}

int run_import(const ImportArgs& a) {
  const ModelConfig m = import_hf(a.hf, a.out);
  std::printf("wrote %s/checkpoints/step-0. Start from it with run.init_from: %s (or --resume with run.dir: %s)\n"
              "and this model section:\nmodel:\n  vocab_size: %ld\n  d_model: %ld\n  n_layers: %ld\n  n_heads: %ld\n"
              "  n_kv_heads: %ld\n  d_ff: %ld\n  max_seq_len: %ld\n  rope_theta: %g\n  norm_eps: %g\n  tie_embeddings: %s\n",
              a.out.c_str(), a.out.c_str(), a.out.c_str(), m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.n_kv_heads,
              m.d_ff, m.max_seq_len, m.rope_theta, m.norm_eps, m.tie_embeddings ? "true" : "false");
  return 0;
}

}  // namespace loom
