#include "runtime/core/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include "runtime/core/error.h"
#include "runtime/core/text_file.h"

namespace loom {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The one declaration of every key: its name, the field it fills and what values it allows.
template <class Visitor>
void visit_fields(Config& c, Visitor& v) {
  v.text("run.dir", c.run.dir);
  v.number("run.seed", c.run.seed, 0, kInf);
  v.flag("run.overwrite", c.run.overwrite);
  v.text("run.init_from", c.run.init_from);

  v.number("model.vocab_size", c.model.vocab_size, 2, 1 << 24);
  v.number("model.d_model", c.model.d_model, 1, 1 << 16);
  v.number("model.n_layers", c.model.n_layers, 1, 1024);
  v.number("model.n_heads", c.model.n_heads, 1, 1024);
  v.number("model.n_kv_heads", c.model.n_kv_heads, 1, 1024);
  v.number("model.d_ff", c.model.d_ff, 0, 1 << 20);
  v.number("model.max_seq_len", c.model.max_seq_len, 1, 1 << 26);
  v.number("model.rope_theta", c.model.rope_theta, 1, kInf);
  v.number("model.norm_eps", c.model.norm_eps, 1e-12, 1);
  v.number("model.init_std", c.model.init_std, 0, 1);
  v.flag("model.tie_embeddings", c.model.tie_embeddings);
  v.number("model.lact.every", c.model.lact.every, 0, 1 << 20);
  v.number("model.lact.chunk", c.model.lact.chunk, 1, 1 << 26);
  v.number("model.lact.window", c.model.lact.window, 1, 1 << 26);
  v.number("model.lact.heads", c.model.lact.heads, 1, 1024);
  v.number("model.lact.inter_multi", c.model.lact.inter_multi, 1, 64);
  v.flag("model.lact.muon", c.model.lact.muon);
  v.flag("model.lact.momentum", c.model.lact.momentum);
  v.number("model.lact.base_lr", c.model.lact.base_lr, 1e-12, 10);
  v.number("model.lact.lowrank", c.model.lact.lowrank, 0, 1 << 20);
  v.flag("model.lact.checkpoint", c.model.lact.checkpoint);
  v.flag("model.lact.rope", c.model.lact.rope);

  v.text("data.path", c.data.path);
  v.number("data.val_fraction", c.data.val_fraction, 0, 0.5);
  v.choice("data.loss_on", c.data.loss_on, {"all", "answers"});

  v.number("train.steps", c.train.steps, 1, kInf);
  v.number("train.seq_len", c.train.seq_len, 2, 1 << 26);
  v.number("train.tokens_per_step", c.train.tokens_per_step, 2, kInf);
  v.number("train.lr", c.train.lr, 0, 10);
  v.number("train.min_lr_ratio", c.train.min_lr_ratio, 0, 1);
  v.number("train.warmup_steps", c.train.warmup_steps, 0, kInf);
  v.number("train.weight_decay", c.train.weight_decay, 0, 10);
  v.number("train.beta1", c.train.beta1, 0, 0.999999);
  v.number("train.beta2", c.train.beta2, 0, 0.999999999);
  v.number("train.eps", c.train.eps, 0, 1);
  v.number("train.grad_clip", c.train.grad_clip, 0, kInf);
  v.choice("train.optimizer", c.train.optimizer, {"adamw", "muon"});
  v.number("train.muon_momentum", c.train.muon_momentum, 0, 0.999999);
  v.choice("train.dtype", c.train.dtype, {"float32", "float64", "bfloat16"});
  v.choice("train.device", c.train.device, {"auto", "cpu", "cuda"});
  v.choice("train.reduce_dtype", c.train.reduce_dtype, {"auto", "float32", "bfloat16"});
  v.number("train.loss_chunk", c.train.loss_chunk, 0, 1 << 26);
  v.choice("train.activation_checkpoint", c.train.activation_checkpoint, {"none", "selective", "full"});
  v.choice("train.on_nan", c.train.on_nan, {"stop", "skip"});
  v.number("train.threads", c.train.threads, 0, 1024);
  v.choice("train.strategy", c.train.strategy, {"full", "seco", "spaco"});
  v.number("train.chunk_size", c.train.chunk_size, 1, 1 << 26);
  v.choice("train.spaco.sampling", c.train.spaco.sampling, {"bernoulli", "fixed"});
  v.number("train.spaco.budget", c.train.spaco.budget, 1e-9, 1);
  v.choice("train.spaco.compensation", c.train.spaco.compensation, {"paper", "none"});
  v.number("train.spaco.cap", c.train.spaco.cap, 1, kInf);

  v.degree("parallel.dp", c.parallel.dp);
  v.number("parallel.sp", c.parallel.sp, 1, 1 << 20);
  v.number("parallel.tp", c.parallel.tp, 1, 1 << 20);
  v.choice("parallel.token_weave", c.parallel.token_weave, {"auto", "on", "off"});
  v.number("parallel.token_weave_min_tokens", c.parallel.token_weave_min_tokens, 0, 1 << 26);
  v.choice("parallel.attention", c.parallel.attention, {"local", "ring", "token_ring", "auto"});
  v.choice("parallel.placement", c.parallel.placement, {"uniform", "zeppelin"});
  v.text("parallel.topology", c.parallel.topology);
  v.number("parallel.zero", c.parallel.zero, 0, 2);
  v.number("parallel.bucket_mb", c.parallel.bucket_mb, 0.001, 1 << 16);
  v.number("parallel.timeout_s", c.parallel.timeout_s, 1, kInf);

  v.number("checkpoint.interval", c.checkpoint.interval, 0, kInf);
  v.number("checkpoint.keep_last", c.checkpoint.keep_last, 1, kInf);

  v.number("log.interval", c.log.interval, 1, kInf);
  v.flag("log.progress", c.log.progress);
  v.flag("log.tensorboard", c.log.tensorboard);
  v.number("log.peak_tflops", c.log.peak_tflops, 0, kInf);

  v.number("eval.interval", c.eval.interval, 0, kInf);
  v.number("eval.max_docs", c.eval.max_docs, 1, kInf);
}

// A leaf of the merged YAML tree and where it was written.
struct Entry {
  YAML::Node value;
  std::string origin;
};
using Entries = std::map<std::string, Entry>;

std::string where(const std::string& file, const YAML::Mark& mark) {
  return file + ":" + std::to_string(mark.line + 1);
}

void flatten(const YAML::Node& node, const std::string& prefix, const std::string& file, Entries& out) {
  for (const auto& item : node) {
    const std::string key = prefix.empty() ? item.first.as<std::string>()
                                           : prefix + "." + item.first.as<std::string>();
    if (item.second.IsMap()) {
      flatten(item.second, key, file, out);
    } else {
      out[key] = {item.second, where(file, item.first.Mark())};
    }
  }
}

YAML::Node parse_yaml(const std::string& text, const std::string& origin_name) {
  try {
    YAML::Node root = YAML::Load(text);
    if (root.IsNull()) return YAML::Node(YAML::NodeType::Map);
    check(root.IsMap(), origin_name + ": a config is a YAML mapping of sections (run:, model:, ...)");
    return root;
  } catch (const YAML::ParserException& e) {
    fail(origin_name + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
}

// Collects the leaves of `path` and of the `base:` files it extends, later files overriding.
void load_file_entries(const std::string& path, std::vector<std::string>& chain, Entries& out) {
  const std::string canonical = std::filesystem::weakly_canonical(path).string();
  for (const auto& seen : chain) {
    check(seen != canonical, path + ": `base:` files form a cycle; remove one of the base: keys");
  }
  chain.push_back(canonical);
  YAML::Node root = parse_yaml(read_text_file(path, "config file"), path);
  if (root["base"]) {
    const auto base = std::filesystem::path(path).parent_path() / root["base"].as<std::string>();
    load_file_entries(base.string(), chain, out);
    root.remove("base");
  }
  flatten(root, "", path, out);
}

void apply_overrides(const std::vector<std::string>& overrides, Entries& out) {
  for (const auto& item : overrides) {
    const auto eq = item.find('=');
    check(eq != std::string::npos && eq > 0,
          "--set '" + item + "': write overrides as key=value, e.g. --set train.lr=3e-4");
    const std::string key = item.substr(0, eq);
    try {
      out[key] = {YAML::Load(item.substr(eq + 1)), "--set " + item};
    } catch (const YAML::ParserException& e) {
      fail("--set " + item + ": the value is not valid YAML (" + e.msg + ")");
    }
  }
}

// Fills the fields from the entries, converting and range-checking each one.
struct Reader {
  Entries& entries;
  Config& config;
  std::set<std::string> used;

  const Entry* find(const char* key) {
    auto it = entries.find(key);
    if (it == entries.end()) return nullptr;
    used.insert(key);
    config.origin[key] = it->second.origin;
    return &it->second;
  }
  template <class T>
  T convert(const char* key, const Entry& e, const char* what) {
    const std::string wrong = e.origin + ": " + key + " must be " + what + ", not '" + YAML::Dump(e.value) + "'";
    if (!e.value.IsScalar()) fail(wrong);
    try {
      return e.value.as<T>();
    } catch (const YAML::BadConversion&) {
      fail(wrong);
    }
  }
  template <class T>
  void number(const char* key, T& field, double lo, double hi) {
    const Entry* e = find(key);
    if (!e) return;
    field = convert<T>(key, *e, std::is_integral_v<T> ? "an integer" : "a number");
    if (field < lo || field > hi) {
      // Bounds of an integer key print as integers: 67108864, not 6.71089e+07.
      auto bound = [](double x) {
        std::ostringstream s;
        if constexpr (std::is_integral_v<T>) s << static_cast<int64_t>(x);
        else s << x;
        return s.str();
      };
      std::ostringstream msg;
      msg << e->origin << ": " << key << " = " << field << " is out of range; allowed: ";
      if (lo == hi) msg << bound(lo) << " (larger values need a later Loom feature)";
      else msg << "[" << bound(lo) << ", " << bound(hi) << "]";
      fail(msg.str());
    }
  }
  void text(const char* key, std::string& field) {
    if (const Entry* e = find(key)) field = convert<std::string>(key, *e, "a string");
  }
  void degree(const char* key, int64_t& field) {
    const Entry* e = find(key);
    if (!e) return;
    if (e->value.IsScalar() && e->value.Scalar() == "auto") {
      field = ParallelConfig::kAuto;
      return;
    }
    number(key, field, 1, 1 << 20);
  }
  void flag(const char* key, bool& field) {
    if (const Entry* e = find(key)) field = convert<bool>(key, *e, "true or false");
  }
  void choice(const char* key, std::string& field, std::initializer_list<const char*> allowed) {
    const Entry* e = find(key);
    if (!e) return;
    field = convert<std::string>(key, *e, "a string");
    std::string list;
    for (const char* a : allowed) {
      if (field == a) return;
      list += std::string(list.empty() ? "" : ", ") + a;
    }
    fail(e->origin + ": " + key + " = '" + field + "' is not one of: " + list);
  }
};

// What a key holds by default and what it allows, as text (docs/configuration.md shows both).
struct KeyDescriber {
  std::vector<KeyInfo> keys;
  static std::string shortest(double x) {
    if (x == kInf) return "inf";
    char buf[32];
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, x).ptr);
  }
  template <class T>
  void number(const char* key, T& field, double lo, double hi) {
    keys.push_back({key, shortest(static_cast<double>(field)), "[" + shortest(lo) + ", " + shortest(hi) + "]"});
  }
  void text(const char* key, std::string& field) { keys.push_back({key, field.empty() ? "(empty)" : field, "text"}); }
  void degree(const char* key, int64_t& field) {
    keys.push_back({key, field == ParallelConfig::kAuto ? "auto" : shortest(static_cast<double>(field)),
                    "auto, [1, " + shortest(1 << 20) + "]"});
  }
  void flag(const char* key, bool& field) { keys.push_back({key, field ? "true" : "false", "true, false"}); }
  void choice(const char* key, std::string& field, std::initializer_list<const char*> allowed) {
    std::string list;
    for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
    keys.push_back({key, field, list});
  }
};

struct Writer {
  YAML::Node root{YAML::NodeType::Map};  // a node already, so copies of it share it
  template <class T>
  static void put(YAML::Node node, const std::string& key, const T& value) {
    const auto dot = key.find('.');
    if (dot == std::string::npos) node[key] = value;
    else put(node[key.substr(0, dot)], key.substr(dot + 1), value);
  }
  template <class T>
  void put(const std::string& key, const T& value) { put(root, key, value); }
  template <class T>
  void number(const char* key, T& field, double, double) {
    if constexpr (std::is_floating_point_v<T>) {
      // The shortest text that reads back to the same double: 0.003, not 0.0030000000000000001.
      char buf[32];
      const auto end = std::to_chars(buf, buf + sizeof buf, field).ptr;
      put(key, YAML::Node(std::string(buf, end)));
    } else {
      put(key, field);
    }
  }
  void text(const char* key, std::string& field) { put(key, field); }
  void degree(const char* key, int64_t& field) {
    if (field == ParallelConfig::kAuto) put(key, "auto");
    else put(key, field);
  }
  void flag(const char* key, bool& field) { put(key, field); }
  void choice(const char* key, std::string& field, std::initializer_list<const char*>) { put(key, field); }
};

void reject_unknown_keys(const Entries& entries, const std::set<std::string>& used) {
  for (const auto& [key, entry] : entries) {
    if (used.count(key)) continue;
    const std::string section = key.substr(0, key.find('.'));
    std::string known;
    for (const auto& k : config_keys()) {
      if (k.rfind(section + ".", 0) == 0) known += (known.empty() ? "" : ", ") + k.substr(section.size() + 1);
    }
    if (known.empty()) {
      fail(entry.origin + ": unknown config key '" + key +
           "'; sections are run, model, data, train, parallel, checkpoint, log, eval");
    }
    fail(entry.origin + ": unknown config key '" + key + "'; keys of '" + section + "': " + known);
  }
}

// Checks between keys; each message names the key whose value is inconsistent and where it was set.
void validate(const Config& c) {
  const auto& m = c.model;
  check(m.d_model % m.n_heads == 0, c.where("model.n_heads") + " = " + std::to_string(m.n_heads) +
                                        " must divide model.d_model = " + std::to_string(m.d_model));
  check(m.n_heads % m.n_kv_heads == 0, c.where("model.n_kv_heads") + " = " + std::to_string(m.n_kv_heads) +
                                           " must divide model.n_heads = " + std::to_string(m.n_heads));
  check(m.head_dim() % 2 == 0, c.where("model.d_model") + ": the head dim d_model/n_heads = " +
                                   std::to_string(m.head_dim()) + " must be even for RoPE");
  if (m.lact.every > 0) {
    check(m.d_model % m.lact.heads == 0, c.where("model.lact.heads") + " = " + std::to_string(m.lact.heads) +
                                             " must divide model.d_model = " + std::to_string(m.d_model));
    check(c.train.strategy == "full", c.where("model.lact.every") +
                                          ": LaCT layers train with train.strategy: full in this version (chunk-wise "
                                          "backprop for them is planned)");
  }
  const auto& t = c.train;
  check(t.tokens_per_step % t.seq_len == 0,
        c.where("train.tokens_per_step") + " = " + std::to_string(t.tokens_per_step) +
            " must be a multiple of train.seq_len = " + std::to_string(t.seq_len));
  check(c.parallel.sp == 1 || c.parallel.attention != "local",
        c.where("parallel.attention") + " = local cannot run with parallel.sp = " + std::to_string(c.parallel.sp) +
            ": choose ring, token_ring or auto");
  check(t.activation_checkpoint != "full" || t.strategy == "full",
        c.where("train.activation_checkpoint") + " = full with train.strategy = " + t.strategy +
            ": chunk-wise backprop already keeps only one chunk's activations; use one of the two (selective combines "
            "with both)");
  const std::string weave = c.where("parallel.token_weave") + " = on";
  check(c.parallel.token_weave != "on" || c.parallel.sp == 1,
        weave + " with parallel.sp = " + std::to_string(c.parallel.sp) +
            ": token splitting cuts whole sequences, and sequence parallelism already splits them; use "
            "parallel.token_weave: auto (it splits where it can) or off");
  check(c.parallel.token_weave != "on" || t.activation_checkpoint != "full",
        weave + " with train.activation_checkpoint = full: the interleaved layers keep their activations; use "
                "parallel.token_weave: auto (it steps aside for checkpointing) or train.activation_checkpoint: none");
  check(c.parallel.token_weave != "on" || t.strategy == "full",
        weave + " with train.strategy = " + t.strategy + ": chunk-wise backprop runs each chunk's layers in order; use "
                "parallel.token_weave: auto (it steps aside for chunk-wise backprop) or off");
  if (c.parallel.placement == "zeppelin") {
    const std::string zeppelin = c.where("parallel.placement") + " = zeppelin";
    check(c.parallel.attention != "local", zeppelin + " with parallel.attention = local: split sequences need ring, "
                                                      "token_ring or auto");
  }
  check(c.parallel.topology.empty() || c.parallel.placement == "zeppelin",
        c.where("parallel.topology") + " is only read with parallel.placement: zeppelin");
  check(t.seq_len <= m.max_seq_len, c.where("train.seq_len") + " = " + std::to_string(t.seq_len) +
                                        " exceeds model.max_seq_len = " + std::to_string(m.max_seq_len));
}

Config build(Entries& entries) {
  Config config;
  Reader reader{entries, config, {}};
  visit_fields(config, reader);
  reject_unknown_keys(entries, reader.used);
  validate(config);
  return config;
}

}  // namespace

std::string Config::where(const std::string& key) const {
  auto it = origin.find(key);
  return (it == origin.end() ? std::string("default") : it->second) + ": " + key;
}

int64_t ModelConfig::ffn_dim() const {
  if (d_ff > 0) return d_ff;
  const int64_t raw = (8 * d_model + 2) / 3;
  return (raw + 63) / 64 * 64;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Entries entries;
  std::vector<std::string> chain;
  load_file_entries(path, chain, entries);
  apply_overrides(overrides, entries);
  return build(entries);
}

Config parse_config(const std::string& yaml_text, const std::string& origin_name,
                    const std::vector<std::string>& overrides) {
  Entries entries;
  flatten(parse_yaml(yaml_text, origin_name), "", origin_name, entries);
  apply_overrides(overrides, entries);
  return build(entries);
}

std::string to_yaml(const Config& config) {
  Config copy = config;
  Writer writer;
  visit_fields(copy, writer);
  YAML::Emitter out;
  out << writer.root;
  return std::string(out.c_str()) + "\n";
}

std::vector<KeyInfo> describe_keys() {
  Config defaults;
  KeyDescriber describer;
  visit_fields(defaults, describer);
  return describer.keys;
}

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const auto& k : describe_keys()) keys.push_back(k.key);
  return keys;
}

}  // namespace loom
