// The Llama model with a LaCT layer, forward and backward on the GPU (float32; positions and
// document ids on the host, where the attention kernels plan their blocks), against the same
// model in float64 on the CPU. Skips where no GPU exists.
#include <gtest/gtest.h>

#include "runtime/model/llama.h"
#include "tests/relative_error.h"

namespace loom {
namespace {

TEST(ModelCuda, LlamaWithLactMatchesFloat64OnTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device on this machine";
  ModelConfig c;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.max_seq_len = 512;
  c.lact = {2, 48, 32, 2, 1, false, true, 1e-2, 8};  // layer 1 LaCT: chunks of 48, window 32
  const auto make = [&] {
    torch::manual_seed(3);
    return Llama(c);
  };
  Llama gpu = make(), cpu = make();
  gpu->to(torch::kCUDA);
  cpu->to(torch::kFloat64);
  // Two packed documents (200 and 130 tokens): chunks cut inside each, the fast weights restart.
  const int64_t n = 330;
  const auto tokens = torch::randint(0, c.vocab_size, {n});
  const auto positions = torch::cat({torch::arange(200), torch::arange(130)});
  const auto docs = torch::cat({torch::zeros({200}, torch::kInt64), torch::ones({130}, torch::kInt64)});
  const auto targets = torch::randint(0, c.vocab_size, {n});
  const auto loss_of = [&](Llama& model, torch::Device device) {
    const auto logits = model->forward(tokens.to(device), positions, docs);
    const auto loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat64), targets.to(device));
    loss.backward();
    return std::make_pair(logits.detach().cpu().to(torch::kFloat64), loss.item<double>());
  };
  const auto [got, got_loss] = loss_of(gpu, torch::kCUDA);
  const auto [want, want_loss] = loss_of(cpu, torch::kCPU);
  EXPECT_LT(test::relative_error(got, want), 1e-4);
  EXPECT_NEAR(got_loss, want_loss, 1e-4 * want_loss);
  const auto gp = gpu->named_parameters(), cp = cpu->named_parameters();
  ASSERT_EQ(gp.size(), cp.size());
  for (size_t i = 0; i < gp.size(); ++i) {
    EXPECT_EQ(gp[i].value().device().type(), torch::kCUDA) << gp[i].key();
    EXPECT_LT(test::relative_error(gp[i].value().grad(), cp[i].value().grad()), 1e-3) << gp[i].key();
  }
}

}  // namespace
}  // namespace loom
