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

Generated generate(Llama& model, const std::vector<int64_t>& prompt, const GenerateOptions& o) {
  check(!prompt.empty(), "generate: the prompt is empty");
  const int64_t context = model->config().max_seq_len;
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  check(prompt_len < context, "generate: the prompt is " + std::to_string(prompt_len) +
                                  " tokens, which leaves no room under model.max_seq_len = " +
                                  std::to_string(context) + "; shorten the prompt");
  torch::NoGradGuard no_grad;
  model->eval();
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(o.seed);
  KvCache cache;
  auto tokens = torch::tensor(prompt, torch::kInt64);
  auto positions = torch::arange(prompt_len, torch::kInt64);
  const auto room = static_cast<size_t>(context - prompt_len);
  Generated out;
  while (static_cast<int64_t>(out.tokens.size()) < o.max_new) {
    if (out.tokens.size() == room) {
      out.stop = GenerateStop::context_full;
      break;
    }
    const auto logits = model->forward_cached(tokens, positions, cache);
    const int64_t next = pick(logits[-1], o.temperature, gen);
    out.tokens.push_back(next);
    if (next == o.stop_token) {
      out.stop = GenerateStop::stop_token;
      break;
    }
    tokens = torch::tensor({next}, torch::kInt64);
    positions = torch::tensor({cache.length()}, torch::kInt64);
  }
  return out;
}

}  // namespace loom
