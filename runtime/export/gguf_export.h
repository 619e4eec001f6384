// A Loom checkpoint as a GGUF v3 file for llama.cpp (architecture "llama"): llama.cpp's tensor
// names, its hyperparameter keys, and the byte-level vocabulary as a "gpt2" tokenizer without
// merges. Matrices are stored in the chosen dtype; 1-D tensors (the norms) stay F32, as llama.cpp's
// own converter keeps them.
#pragma once
#include <torch/torch.h>

#include <string>

namespace loom {

void export_gguf(const std::string& checkpoint, const std::string& out_path, torch::ScalarType dtype);

// llama.cpp's "llama" architecture rotates adjacent pairs (x[2i], x[2i+1]) where Hugging Face (and
// Loom) rotate halves (x[i], x[i + d/2]): the rows of q_proj and k_proj are reordered per head,
// [h0 ... h_{d/2-1} | h_{d/2} ... h_{d-1}] -> [h0 h_{d/2} h1 h_{d/2+1} ...]. `inverse` undoes it.
torch::Tensor rope_rows_to_pairs(const torch::Tensor& weight, int64_t heads, bool inverse = false);

// The llama.cpp name of a Loom (Hugging Face) parameter name.
std::string gguf_tensor_name(const std::string& hf_name);

}  // namespace loom
