// loom: the one executable. `loom --help` lists the subcommands.
#include <CLI/CLI.hpp>

#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "launch/bench/benchmarks.h"
#include "launch/commands.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/core/error.h"
#include "runtime/core/host_allocator.h"

namespace {

// Prints the failure; in a job of several ranks it also ends every other rank, which would
// otherwise wait for this one until their collectives time out.
int report_failure(const std::string& kind, const std::string& message, int code) {
  std::fflush(stdout);
  const int size = loom::mpi_world_size();
  if (size > 1) {
    loom::abort_job("\nloom: " + kind + " on rank " + std::to_string(loom::mpi_world_rank()) + " of " + std::to_string(size) +
                    ": " + message + "\n(ending every rank of the job)");
  }
  std::fprintf(stderr, "\nloom: %s: %s\n", kind.c_str(), message.c_str());
  return code;
}

// Checks an output file's path while the command line is read: its folder is made if missing, and
// one that cannot be made or written ends the command before its work (a benchmark, an
// evaluation) rather than losing the results at the end. Throws loom::Error, so the message and
// exit code are those of every other error the user can fix.
const CLI::Validator output_file(
    [](std::string& path) {
      const std::filesystem::path folder = std::filesystem::path(path).parent_path();
      std::error_code ec;
      if (!folder.empty()) std::filesystem::create_directories(folder, ec);
      loom::check(!ec, "cannot make the folder '" + folder.string() + "' for '" + path + "': " + ec.message());
      loom::check(access(folder.empty() ? "." : folder.c_str(), W_OK) == 0,
                  "cannot write '" + path + "': its folder is not writable; choose another path");
      return std::string();
    },
    "FILE");

// A number on the command line that must be positive or, with `zero_allowed`, not negative
// (CLI11's own validators print the range up to DBL_MAX in full).
CLI::Validator sign_check(bool zero_allowed) {
  return CLI::Validator(
      [zero_allowed](std::string& text) {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0') return "'" + text + "' is not a number";
        if (value > 0 || (zero_allowed && value == 0)) return std::string();
        return std::string(zero_allowed ? "must not be negative" : "must be positive") + ", not " + text;
      },
      zero_allowed ? "NUMBER >= 0" : "NUMBER > 0");
}
const CLI::Validator positive = sign_check(false), non_negative = sign_check(true);

void add_train(CLI::App& app, loom::TrainArgs& a, int& rc) {
  auto* cmd = app.add_subcommand("train", "train a model described by a YAML config");
  cmd->add_option("--config", a.config, "YAML experiment config")->required();
  cmd->add_option("--set", a.overrides, "override a config key, e.g. --set train.lr=3e-4 (repeatable)");
  cmd->add_option("--resume", a.resume, "'auto' (latest checkpoint of run.dir) or a checkpoint path");
  cmd->add_flag("--dry-run", a.dry_run, "check the config for a world size and show the mesh, shapes and memory per rank");
  cmd->add_option("--world", a.world, "ranks the dry run checks for (default: what the config's degrees make)")
      ->check(positive);
  cmd->callback([&] { rc = a.dry_run ? loom::run_train_dry(a) : loom::run_train(a); });
}

void add_plan(CLI::App& app, loom::PlanArgs& a, int& rc) {
  auto* cmd = app.add_subcommand("plan", "where Zeppelin's planner would compute one step's sequences, and its predicted "
                                         "time next to uniform context parallelism's (docs/placement.md)");
  cmd->add_option("--config", a.config, "YAML experiment config")->required()->check(CLI::ExistingFile);
  cmd->add_option("--set", a.overrides, "override a config key (repeatable)");
  cmd->add_option("--topology", a.topology,
                  "topology file (default: parallel.topology, else one node of the config's dp x sp ranks)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--step", a.step, "which training step")->check(CLI::NonNegativeNumber);
  cmd->add_option("--flops", a.flops_per_s, "achieved FLOP/s per rank (default: the topology's rank_tflops, 200 TFLOP/s)")
      ->check(CLI::PositiveNumber);
  cmd->callback([&] { rc = loom::run_plan(a); });
}

void add_eval(CLI::App& app, loom::EvalArgs& a, int& rc) {
  auto* cmd = app.add_subcommand("eval", "loss, perplexity and retrieval accuracy (task data) of a checkpoint");
  cmd->add_option("--checkpoint", a.checkpoint, "checkpoint folder or run dir")->required();
  cmd->add_option("--data", a.data, "HDF5 dataset (default: the run's validation split)");
  cmd->add_option("--json", a.json_out, "also write the results as JSON here")->check(output_file);
  cmd->add_option("--max-docs", a.max_docs, "evaluate at most this many documents")->check(positive);
  cmd->add_option("--dump-logits", a.dump_logits, "instead: write the logits of --text's tokens to this safetensors file")
      ->check(output_file);
  cmd->add_option("--text", a.text, "with --dump-logits: the text (byte tokens, no BOS)");
  cmd->callback([&] { rc = loom::run_eval(a); });
}

void add_generate(CLI::App& app, loom::GenerateArgs& a, int& rc) {
  auto* cmd = app.add_subcommand("generate", "continue a prompt with a trained model (KV-cached)");
  cmd->add_option("--checkpoint", a.checkpoint, "checkpoint folder or run dir")->required();
  cmd->add_option("--prompt", a.prompt, "text to continue")->required();
  cmd->add_option("--max-new", a.max_new, "tokens to generate")->check(non_negative);
  cmd->add_option("--temperature", a.temperature, "0 = greedy")->check(non_negative);
  cmd->add_option("--seed", a.seed, "sampling seed");
  cmd->callback([&] { rc = loom::run_generate(a); });
}

void add_data(CLI::App& app, loom::SynthArgs& synth, std::vector<std::string>& inputs, std::string& out,
              std::string& inspect_path, int& rc) {
  auto* data = app.add_subcommand("data", "make and inspect HDF5 datasets");
  data->require_subcommand(1);
  auto* s = data->add_subcommand("synth", "synthetic long-context task data");
  s->add_option("--task", synth.task,
                "passkey (one key hidden in filler), recall (many key-value pairs, each asked later) or copy (a "
                "random string twice: the induction warm-up)")
      ->check(CLI::IsMember({"passkey", "recall", "copy"}));
  s->add_option("--out", synth.out, "output .h5 file")->check(output_file)->required();
  s->add_option("--docs", synth.docs, "number of documents");
  s->add_option("--min-len", synth.min_len, "shortest document in bytes");
  s->add_option("--max-len", synth.max_len, "longest document in bytes (recall: pairs first, queries last, so lengths set the distances)");
  s->add_option("--seed", synth.seed, "random seed");
  s->add_option("--key-digits", synth.key_digits, "digits of the pass key (1-9)")->check(CLI::Range(1, 9));
  s->add_option("--pairs", synth.pairs, "recall: key-value pairs per document, each asked once")->check(positive);
  s->add_option("--key-len", synth.key_len, "recall: letters per key")->check(CLI::Range(1, 8));
  s->add_option("--value-len", synth.value_len, "recall: digits per value")->check(CLI::Range(1, 9));
  s->add_option("--style", synth.style, "prose (natural sentences) or marker (the key and question marked by '#')")
      ->check(CLI::IsMember({"prose", "marker"}));
  s->callback([&] { rc = loom::run_data_synth(synth); });
  auto* p = data->add_subcommand("prepare", "text files or folders -> one document per file");
  p->add_option("--input", inputs, "text files or folders")->required();
  p->add_option("--out", out, "output .h5 file")->check(output_file)->required();
  p->callback([&] { rc = loom::run_data_prepare(inputs, out); });
  auto* i = data->add_subcommand("inspect", "documents, tokens and the length histogram of a dataset");
  i->add_option("file", inspect_path, "dataset .h5")->required();
  i->callback([&] { rc = loom::run_data_inspect(inspect_path); });
}

void add_export_import(CLI::App& app, loom::ExportArgs& e, loom::ImportArgs& i, int& rc) {
  auto* ex = app.add_subcommand("export", "a checkpoint as a Hugging Face directory (transformers, vLLM) or a GGUF file (llama.cpp)");
  ex->add_option("--checkpoint", e.checkpoint, "checkpoint folder or run dir")->required();
  ex->add_option("--format", e.format, "hf or gguf")->required()->check(CLI::IsMember({"hf", "gguf"}));
  ex->add_option("--out", e.out, "output directory (hf) or file (gguf); must not exist")->check(output_file)->required();
  ex->add_option("--dtype", e.dtype, "f32, bf16 or f16")->check(CLI::IsMember({"f32", "bf16", "f16"}));
  ex->add_option("--shard-mb", e.shard_mb, "hf: largest safetensors shard in MB");
  ex->callback([&] { rc = loom::run_export(e); });
  auto* im = app.add_subcommand("import", "a Hugging Face Llama directory as a Loom checkpoint to continue training from");
  im->add_option("--hf", i.hf, "the Hugging Face model directory (config.json + safetensors)")->required();
  im->add_option("--out", i.out, "run dir to write checkpoints/step-0 into")->required();
  im->callback([&] { rc = loom::run_import(i); });
}

void add_config(CLI::App& app, int& rc) {
  auto* config = app.add_subcommand("config", "what a YAML config may hold");
  config->require_subcommand(1);
  auto* keys = config->add_subcommand("keys", "every key with its default and allowed values (docs/configuration.md says what each means)");
  keys->callback([&] { rc = loom::run_config_keys(); });
}

void add_summary(CLI::App& app, std::string& run_dir, std::string& plot, int& rc) {
  auto* cmd = app.add_subcommand("summary", "what a run produced: paths, loss curve, throughput, evaluation");
  cmd->add_option("run_dir", run_dir, "the run's run.dir")->required();
  cmd->add_option("--plot", plot, "also draw loss, eval loss and accuracy by distance into this PNG (gnuplot)")
      ->check(output_file);
  cmd->callback([&] { rc = loom::run_summary(run_dir, plot); });
}

void add_bench(CLI::App& app, loom::TrainBenchArgs& a, loom::CommBenchArgs& comm, loom::AttentionBenchArgs& attn,
               loom::TensorBenchArgs& tensor, loom::ChunkwiseBenchArgs& cw, loom::BlockBenchArgs& block, loom::LactBenchArgs& lact, int& rc) {
  auto* bench = app.add_subcommand("bench", "benchmarks: ratios measured side by side in one run");
  bench->require_subcommand(1);
  auto* t = bench->add_subcommand("train", "training throughput against the machine's matmul ceiling");
  t->add_option("--steps", a.steps, "timed steps per model")->check(positive);
  t->add_option("--d-model", a.d_models, "model widths to try")->check(positive);
  t->add_option("--seq-len", a.seq_len, "tokens per step")->check(positive);
  t->add_option("--json", a.json_out, "write the results as JSON here")->check(output_file);
  t->callback([&] { rc = loom::run_bench_train(a); });
  auto* c = bench->add_subcommand("comm", "collectives of Loom's communicator next to raw MPI, and compute/communication overlap "
                                          "(start on several ranks with launch/loom-run)");
  c->add_option("--min-bytes", comm.min_bytes, "smallest message per rank")->check(positive);
  c->add_option("--max-bytes", comm.max_bytes, "largest message per rank")->check(positive);
  c->add_option("--reps", comm.reps, "timed repetitions per size (at least)")->check(positive);
  c->add_option("--overlap-bytes", comm.overlap_bytes, "all_reduce size of the overlap measurement")->check(positive);
  c->add_option("--json", comm.json_out, "write the results as JSON here")->check(output_file);
  c->callback([&] { rc = loom::run_bench_comm(comm); });
  auto* at = bench->add_subcommand("attention", "local, ring and token_ring attention side by side (start on the sp ranks "
                                                "with launch/loom-run)");
  at->add_option("--seq-len", attn.seq_lens, "sequence lengths")->check(positive);
  at->add_option("--heads", attn.heads, "query heads")->check(positive);
  at->add_option("--kv-heads", attn.kv_heads, "KV head counts to try")->check(positive);
  at->add_option("--head-dim", attn.head_dim, "head dimension")->check(positive);
  at->add_option("--reps", attn.reps, "timed repetitions")->check(positive);
  at->add_option("--warmups", attn.warmups, "untimed runs before them (0 for the longest sequences)")
      ->check(non_negative);
  at->add_option("--json", attn.json_out, "write the results as JSON here")->check(output_file);
  at->callback([&] { rc = loom::run_bench_attention(attn); });
  auto* tn = bench->add_subcommand("tensor", "a tensor-parallel layer stack with and without token splitting (TokenWeave), "
                                             "compute and communication apart (start on the tp ranks with launch/loom-run)");
  tn->add_option("--seq-len", tensor.seq_lens, "sequence lengths")->check(positive);
  tn->add_option("--d-model", tensor.d_model, "model width (heads of 64)")->check(positive);
  tn->add_option("--layers", tensor.layers, "layers")->check(positive);
  tn->add_option("--reps", tensor.reps, "timed repetitions")->check(positive);
  tn->add_option("--warmups", tensor.warmups, "untimed runs before them (0 for the longest sequences)")->check(non_negative);
  tn->add_option("--json", tensor.json_out, "write the results as JSON here")->check(output_file);
  tn->callback([&] { rc = loom::run_bench_tensor(tensor); });
  auto* ch = bench->add_subcommand("chunkwise", "peak memory and step time of full backprop (plain, selective and full "
                                                "activation checkpointing), SeCO and SpaCO, and the longest sequence "
                                                "each trains within one memory cap");
  ch->add_option("--lengths", cw.lengths, "sequence lengths (one document each)")->check(positive);
  ch->add_option("--chunk", cw.chunk_size, "tokens per chunk")->check(positive);
  ch->add_option("--budget", cw.budget, "fraction of the chunks SpaCO visits")
      ->check(positive)
      ->check(CLI::Range(0.0, 1.0));
  ch->add_option("--d-model", cw.d_model, "model width")->check(positive);
  ch->add_option("--layers", cw.layers, "model depth")->check(positive);
  ch->add_option("--reps", cw.reps, "timed steps after a warm-up step")->check(positive);
  ch->add_option("--headroom-mb", cw.headroom_mb, "memory cap above the baseline process")->check(positive);
  ch->add_option("--json", cw.json_out, "write the results as JSON here")->check(output_file);
  ch->add_option("--child", cw.child)->group("");  // one measurement, started by the benchmark itself
  ch->add_option("--child-length", cw.child_length)->group("");
  ch->callback([&] { rc = loom::run_bench_chunkwise(cw); });
  auto* bl = bench->add_subcommand("block", "the attention block kernel alone, every path this build has (tiled, and on a GPU "
                                             "cuDNN and FlashAttention-2), against the matmul ceiling");
  bl->add_option("--tokens", block.lengths, "block lengths (default 1024 4096, and 16384 65536 on a GPU)")->check(positive);
  bl->callback([&] { rc = loom::run_bench_block(block); });
  auto* la = bench->add_subcommand("lact", "LaCT's fast-weight chunk loop against the matmul ceiling per chunk size, and a "
                                           "LaCT model against full attention per length");
  la->add_option("--chunks", lact.chunks, "chunk sizes of the utilisation table")->check(positive);
  la->add_option("--tokens", lact.tokens, "tokens of the utilisation table (default 16384 on a CPU, 65536 on a GPU)")
      ->check(positive);
  la->add_option("--heads", lact.heads, "fast-weight heads of the utilisation table (default 2 on a CPU, 4 on a GPU)")
      ->check(positive);
  la->add_option("--head-dim", lact.head_dim, "their size (default 384 on a CPU, 512 on a GPU)")->check(positive);
  la->add_option("--lengths", lact.lengths, "sequence lengths of the model table")->check(positive);
  la->add_flag_callback("--no-model", [&] { lact.lengths.clear(); }, "skip the model table");
  la->add_option("--reps", lact.reps, "timed repetitions after a warm-up")->check(positive);
  la->add_option("--json", lact.json_out, "write the results as JSON here")->check(output_file);
  la->callback([&] { rc = loom::run_bench_lact(lact); });
}

void add_placement_bench(CLI::App& app, loom::PlacementBenchArgs& p, int& rc) {
  auto* pl = app.get_subcommand("bench")->add_subcommand(
      "placement", "Zeppelin's placement of variable-length batches against uniform context parallelism, as the cost "
                   "model predicts it on the clusters of configs/topology/");
  pl->add_flag("--simulate", p.simulate, "predict with the cost model");
  pl->add_flag("--train", p.train,
               "measure training steps of --config under uniform and zeppelin placement, alternating, on the ranks "
               "launched (with parallel.topology describing them)");
  pl->add_option("--config", p.config, "with --train: the YAML experiment config")->check(CLI::ExistingFile);
  pl->add_option("--set", p.overrides, "with --train: override a config key (repeatable)");
  pl->add_option("--warmups", p.warmups, "with --train: untimed steps first")->check(CLI::NonNegativeNumber);
  pl->add_option("--topology", p.topologies, "topology files")->check(CLI::ExistingFile);
  pl->add_option("--gpus", p.gpus, "cluster sizes (multiples of a node)")->check(CLI::PositiveNumber);
  pl->add_option("--cp", p.cp, "the uniform baseline's context-parallel group size (dividing every --gpus)")
      ->check(CLI::PositiveNumber);
  pl->add_option("--flops", p.flops_per_s, "achieved FLOP/s per GPU (default 2e14)")->check(CLI::PositiveNumber);
  pl->add_option("--tokens-per-gpu", p.tokens_per_gpu, "tokens per GPU per step")->check(CLI::PositiveNumber);
  pl->add_option("--max-length", p.max_length, "longest sequence drawn")->check(CLI::PositiveNumber);
  pl->add_option("--max-tokens-per-gpu", p.max_tokens_per_rank, "most tokens one GPU holds")->check(CLI::PositiveNumber);
  pl->add_option("--steps", p.steps, "steps drawn per row (with --train: timed steps)")->check(CLI::PositiveNumber);
  pl->add_option("--json", p.json_out, "write the results as JSON here");
  pl->callback([&] { rc = loom::run_bench_placement(p); });
}

void add_calibrate_bench(CLI::App& app, loom::CalibrateArgs& c, int& rc) {
  auto* cmd = app.get_subcommand("bench")->add_subcommand(
      "calibrate", "measure Zeppelin's cost model on the ranks launched (the model's time per attention pair and per token, "
                   "the links within and across nodes) and write it as a topology file");
  cmd->add_option("--config", c.config, "the YAML experiment config whose model is timed")->required()->check(CLI::ExistingFile);
  cmd->add_option("--set", c.overrides, "override a config key (repeatable)");
  cmd->add_option("--out", c.out, "the topology file to write")->required()->check(output_file);
  cmd->add_option("--lengths", c.lengths, "document lengths timed (default: train.seq_len / 4, / 2 and itself)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--nics-per-node", c.nics_per_node, "NICs per node, written as is (ranks cannot see them)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--bytes", c.bytes, "bytes exchanged per link measurement")->check(CLI::PositiveNumber);
  cmd->add_option("--reps", c.reps, "timed repetitions of each measurement (median)")->check(CLI::PositiveNumber);
  cmd->callback([&] { rc = loom::run_bench_calibrate(c); });
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// CLI11's "A subcommand is required" does not say which word was not a command: find the first
// word that is not a command where one is expected, and name the commands there and the nearest.
std::string unknown_command(CLI::App& app, int argc, char** argv) {
  CLI::App* level = &app;
  std::string path = "loom";
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') continue;
    const auto commands = level->get_subcommands([](CLI::App*) { return true; });
    if (commands.empty()) return "";
    std::string names, nearest;
    size_t nearest_distance = 3;  // suggest only near misses
    for (CLI::App* c : commands) {
      if (c->get_name() == word) level = c;
      names += (names.empty() ? "" : ", ") + c->get_name();
      const size_t d = edit_distance(word, c->get_name());
      if (d < nearest_distance) nearest_distance = d, nearest = c->get_name();
    }
    if (level->get_name() == word) {
      path += " " + word;
      continue;
    }
    return "'" + word + "' is not a command of `" + path + "`" + (nearest.empty() ? "" : "; did you mean '" + nearest + "'?") +
           " The commands are: " + names + ".";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's LibTorch starts with one intra-op thread whatever the machine; use every core unless
  // the user chose (OMP_NUM_THREADS, or train.threads for training).
  if (!std::getenv("OMP_NUM_THREADS")) torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
  loom::keep_large_host_blocks();
  CLI::App app{"Loom: distributed long-context training on LibTorch"};
  app.require_subcommand(1);
  app.set_version_flag("--version", loom::version_report, "the libraries Loom runs on and the machine");
  int rc = 0;
  loom::TrainArgs train;
  loom::PlanArgs plan;
  loom::EvalArgs eval;
  loom::GenerateArgs gen;
  loom::SynthArgs synth;
  loom::ExportArgs export_args;
  loom::ImportArgs import_args;
  loom::TrainBenchArgs bench;
  loom::CommBenchArgs bench_comm;
  loom::AttentionBenchArgs bench_attention;
  loom::TensorBenchArgs bench_tensor;
  loom::ChunkwiseBenchArgs bench_chunkwise;
  loom::BlockBenchArgs bench_block;
  loom::LactBenchArgs bench_lact;
  loom::PlacementBenchArgs bench_placement;
  std::vector<std::string> inputs;
  std::string out, inspect_path, run_dir, plot_path;
  add_train(app, train, rc);
  add_plan(app, plan, rc);
  add_eval(app, eval, rc);
  add_generate(app, gen, rc);
  add_data(app, synth, inputs, out, inspect_path, rc);
  add_summary(app, run_dir, plot_path, rc);
  add_config(app, rc);
  add_export_import(app, export_args, import_args, rc);
  add_bench(app, bench, bench_comm, bench_attention, bench_tensor, bench_chunkwise, bench_block, bench_lact, rc);
  add_placement_bench(app, bench_placement, rc);
  loom::CalibrateArgs bench_calibrate;
  add_calibrate_bench(app, bench_calibrate, rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help (exit code 0) prints as CLI11 does; a bad command line is an error the user can fix
    // like any other: the same prefix and exit code.
    if (e.get_exit_code() == 0) return app.exit(e);
    if (const std::string unknown = unknown_command(app, argc, argv); !unknown.empty())
      return report_failure("error", unknown, 1);
    return report_failure("error", std::string(e.what()) + " (run with --help for the options)", 1);
  } catch (const loom::Error& e) {
    return report_failure("error", e.what(), 1);
  } catch (const std::exception& e) {
    return report_failure("internal error (please report)", e.what(), 3);
  }
  return rc;
}
