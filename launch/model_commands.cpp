// loom train | eval | generate
#include <cstdio>

#include "launch/commands.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/core/error.h"
#include "runtime/core/precision.h"
#include "runtime/core/safetensors.h"
#include "runtime/core/text_file.h"
#include "runtime/data/batch_loader.h"
#include "runtime/data/tokenizer.h"
#include "runtime/model/generate.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/evaluation.h"
#include "runtime/train/trainer.h"

namespace loom {
namespace {

struct LoadedModel {
  CheckpointMeta meta;
  Llama model{nullptr};
};

LoadedModel load_model(const std::string& path) {
  const std::string dir = resolve_checkpoint(path, path);
  check(!dir.empty(), "no checkpoint found at '" + path + "'");
  LoadedModel loaded{read_checkpoint_meta(dir), Llama(nullptr)};
  loaded.model = Llama(loaded.meta.config.model);
  loaded.model->to(resolve_precision(loaded.meta.config).param);
  load_weights(dir, loaded.model->parameter_list());
  return loaded;
}

}  // namespace

int run_train(const TrainArgs& args) {
  const Config config = load_config(args.config, args.overrides);
  const TrainSummary s = train(config, {args.resume});
  if (mpi_world_rank() == 0)
    std::printf("done: %ld steps, last loss %.4f, checkpoint %s\n", s.steps_done, s.last_loss, s.checkpoint.c_str());
  return 0;
}

// The logits of one text, for comparing Loom with another implementation of the same model
// (tests/interop/check_exports.py computes them from the Hugging Face export).
int dump_logits(LoadedModel& m, const EvalArgs& args) {
  check(!args.text.empty(), "--dump-logits needs --text");
  std::vector<int64_t> ids;
  for (int32_t t : tokenizer::encode(args.text)) ids.push_back(t);
  const auto tokens = torch::tensor(ids, torch::kInt64);
  const auto positions = torch::arange(tokens.size(0), torch::kInt64);
  torch::NoGradGuard no_grad;
  const auto logits = m.model->forward(tokens, positions, torch::zeros_like(positions)).to(torch::kFloat32);
  write_safetensors(args.dump_logits, {{"tokens", tokens}, {"logits", logits}});
  std::printf("wrote the logits of %ld tokens to %s\n", tokens.size(0), args.dump_logits.c_str());
  return 0;
}

int run_eval(const EvalArgs& args) {
  LoadedModel m = load_model(args.checkpoint);
  if (!args.dump_logits.empty()) return dump_logits(m, args);
  const Config& c = m.meta.config;
  const std::string path = args.data.empty() ? c.data.path : args.data;
  const TokenDataset data = read_dataset(path);
  check(data.vocab_size <= c.model.vocab_size, "dataset '" + path + "' has vocab size " + std::to_string(data.vocab_size) +
                                                   ", larger than the model's " + std::to_string(c.model.vocab_size));
  // The training file is scored on its held-out split; any other file is held out as a whole.
  const bool training_file = path == c.data.path;
  const auto docs = split_documents(data, training_file ? Split::kValidation : Split::kTrain,
                                    training_file ? c.data.val_fraction : 0.0);
  check(!docs.empty(), "no documents to evaluate in '" + path + "'");
  int64_t longest = c.train.seq_len;
  for (int64_t d : docs) longest = std::max(longest, data.doc_length(d));
  const int64_t seq_len = std::min(longest, c.model.max_seq_len);
  std::printf("evaluating %s (step %ld) on %s (%s split)\n", m.meta.dir.c_str(), m.meta.step, path.c_str(),
              training_file ? "validation" : "whole file");
  // The loss over what the run learnt from: its answers where it trained on answers and the file has them.
  const std::string loss_on = data.has_answers() ? c.data.loss_on : "all";
  const EvalResult r = evaluate(m.model, data, docs, seq_len, args.max_docs, loss_on);
  std::printf("%s", r.table().c_str());
  if (!args.json_out.empty()) {
    auto j = r.to_json();
    j["checkpoint"] = m.meta.dir;
    j["step"] = m.meta.step;
    j["data"] = path;
    write_text_file(args.json_out, j.dump(2) + "\n");
  }
  return 0;
}

int run_generate(const GenerateArgs& args) {
  LoadedModel m = load_model(args.checkpoint);
  std::vector<int64_t> prompt = {tokenizer::kBos};
  for (int32_t t : tokenizer::encode(args.prompt)) prompt.push_back(t);
  const Generated out = generate(m.model, prompt, {args.max_new, args.temperature, tokenizer::kEos, args.seed});
  const std::vector<int32_t> ids(out.tokens.begin(), out.tokens.end());
  std::printf("%s%s\n", args.prompt.c_str(), tokenizer::decode(ids).c_str());
  if (out.stop == GenerateStop::context_full)
    std::fprintf(stderr, "loom: stopped after %zu new tokens: the text reached model.max_seq_len = %ld tokens\n",
                 out.tokens.size(), m.meta.config.model.max_seq_len);
  return 0;
}

}  // namespace loom
