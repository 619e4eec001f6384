// Loads a GGUF file with llama.cpp, tokenizes a text with the file's own tokenizer and writes the
// logits of every position: `llama_cpp_logits MODEL.gguf TEXT OUT.f32` prints the token ids as one
// JSON array and writes n_tokens x n_vocab float32 values to OUT.f32. Built by scripts/interop.sh.
#include <cstdio>
#include <cstring>
#include <vector>

#include "llama.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf TEXT OUT.f32\n", argv[0]);
    return 2;
  }
  llama_backend_init();
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) {
    std::fprintf(stderr, "llama.cpp could not load %s\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  std::vector<llama_token> tokens(std::strlen(argv[2]) + 8);
  const int n = llama_tokenize(vocab, argv[2], static_cast<int32_t>(std::strlen(argv[2])), tokens.data(),
                               static_cast<int32_t>(tokens.size()), false, false);
  if (n < 0) return 1;
  tokens.resize(n);
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(n);
  // Compare at float32: the default f16 KV cache (and the f16 flash-attention path) would round.
  cp.type_k = cp.type_v = GGML_TYPE_F32;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  llama_context* ctx = llama_init_from_model(model, cp);
  llama_batch batch = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) {
    batch.token[i] = tokens[i];
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = n;
  if (llama_decode(ctx, batch) != 0) {
    std::fprintf(stderr, "llama_decode failed\n");
    return 1;
  }
  const int vocab_size = llama_vocab_n_tokens(vocab);
  FILE* out = std::fopen(argv[3], "wb");
  for (int i = 0; i < n; ++i) std::fwrite(llama_get_logits_ith(ctx, i), sizeof(float), vocab_size, out);
  std::fclose(out);
  std::printf("[");
  for (int i = 0; i < n; ++i) std::printf("%s%d", i ? ", " : "", tokens[i]);
  std::printf("]\n");
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
