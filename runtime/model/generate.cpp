#include "runtime/model/generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include "runtime/core/error.h"

namespace loom {
namespace {

int64_t pick(const torch::Tensor& logits, double temperature, torch::Generator& gen) {
  if (temperature <= 0) return logits.argmax().item<int64_t>();
  const auto probs = torch::softmax(logits.to(torch::kFloat64) / temperature, -1);
  return torch::multinomial(probs, 1, /*replacement=*/false, gen).item<int64_t>();
}

}  // namespace

std::vector<int64_t> generate(Llama& model, const std::vector<int64_t>& prompt, const GenerateOptions& o) {
  check(!prompt.empty(), "generate: the prompt is empty");
  torch::NoGradGuard no_grad;
  model->eval();
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(o.seed);
  KvCache cache;
  auto tokens = torch::tensor(prompt, torch::kInt64);
  auto positions = torch::arange(static_cast<int64_t>(prompt.size()), torch::kInt64);
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < o.max_new) {
    const auto logits = model->forward_cached(tokens, positions, cache);
    const int64_t next = pick(logits[-1], o.temperature, gen);
    out.push_back(next);
    if (next == o.stop_token) break;
    tokens = torch::tensor({next}, torch::kInt64);
    positions = torch::tensor({cache.length()}, torch::kInt64);
  }
  return out;
}

}  // namespace loom
