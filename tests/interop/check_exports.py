"""Reads Loom's exports with independent readers: the `safetensors` and `gguf` Python packages and
Hugging Face `tokenizers`, and runs the exported model with a NumPy Llama written from the Hugging
Face conventions (config.json fields, rotate-half RoPE) against Loom's own logits. Arguments: the
checkpoint folder, the f32 hf export, an f16 sharded hf export, the f32 GGUF export, and
`loom eval --dump-logits` output. Exits non-zero on the first mismatch."""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from safetensors.numpy import load_file
from tokenizers import Tokenizer

checkpoint, hf, hf_sharded, gguf_path, loom_logits = sys.argv[1:6]
reference = load_file(os.path.join(checkpoint, "model.safetensors"))
config = json.load(open(os.path.join(hf, "config.json")))


def same_bits(name, got, want):
    if got.dtype != want.dtype or got.shape != want.shape or got.tobytes() != want.tobytes():
        sys.exit(f"{name}: {got.dtype}{got.shape} differs from the expected {want.dtype}{want.shape}")


# hf, single file, f32: every tensor bit for bit.
single = load_file(os.path.join(hf, "model.safetensors"))
assert set(single) == set(reference), f"tensor names differ: {set(single) ^ set(reference)}"
for name, want in reference.items():
    same_bits(name, single[name], want)

# hf, sharded through the index, f16: every tensor is the f32 value rounded to f16.
index = json.load(open(os.path.join(hf_sharded, "model.safetensors.index.json")))
assert set(index["weight_map"]) == set(reference)
shards = {f: load_file(os.path.join(hf_sharded, f)) for f in set(index["weight_map"].values())}
assert len(shards) > 1, "the sharded export has one shard"
assert index["metadata"]["total_size"] == sum(t.nbytes for s in shards.values() for t in s.values())
for name, want in reference.items():
    same_bits(name, shards[index["weight_map"][name]][name], want.astype(np.float16))

# tokenizer.json: the ids of Loom's byte-level tokenizer (the UTF-8 bytes) and back.
tokenizer = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
for text in ["The pass key is 71432.", "héllo wörld\n\t ~ \x00 \x7f ü€𝄞"]:
    ids = tokenizer.encode(text).ids
    assert ids == list(text.encode("utf-8")), f"{text!r}: {ids}"
    assert tokenizer.decode(ids) == text
assert tokenizer.token_to_id("<|bos|>") == config["bos_token_id"]
assert tokenizer.token_to_id("<|eos|>") == config["eos_token_id"]

# GGUF: keys against config.json, tensors against the checkpoint (q/k rows in llama.cpp's pair order).
reader = GGUFReader(gguf_path)
fields = {name: reader.fields[name] for name in reader.fields}


def value(key):
    f = fields[key]
    return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]][0]


expect = {
    "general.architecture": "llama",
    "llama.block_count": config["num_hidden_layers"],
    "llama.embedding_length": config["hidden_size"],
    "llama.feed_forward_length": config["intermediate_size"],
    "llama.attention.head_count": config["num_attention_heads"],
    "llama.attention.head_count_kv": config["num_key_value_heads"],
    "llama.rope.dimension_count": config["head_dim"],
    "llama.context_length": config["max_position_embeddings"],
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.bos_token_id": config["bos_token_id"],
    "tokenizer.ggml.eos_token_id": config["eos_token_id"],
}
for key, want in expect.items():
    assert value(key) == want, f"{key}: {value(key)} != {want}"
assert abs(value("llama.attention.layer_norm_rms_epsilon") - config["rms_norm_eps"]) < 1e-9
assert abs(value("llama.rope.freq_base") - config["rope_theta"]) < 1e-3
tokens = value("tokenizer.ggml.tokens")
assert len(tokens) == config["vocab_size"] and tokens[256] == "<|bos|>"


def pairs(w, heads):
    half = w.shape[0] // heads // 2
    return w.reshape(heads, 2, half, -1).swapaxes(1, 2).reshape(w.shape)


names = {
    "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
for i in range(config["num_hidden_layers"]):
    for g, h in [("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
                 ("attn_output", "self_attn.o_proj"), ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"),
                 ("ffn_down", "mlp.down_proj"), ("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")]:
        names[f"blk.{i}.{g}.weight"] = f"model.layers.{i}.{h}.weight"
seen = set()
for t in reader.tensors:
    want = reference[names[t.name]]
    if ".attn_q." in t.name:
        want = pairs(want, config["num_attention_heads"])
    if ".attn_k." in t.name:
        want = pairs(want, config["num_key_value_heads"])
    assert list(t.shape) == list(reversed(want.shape)), f"{t.name}: dims {list(t.shape)}"
    assert t.data.tobytes() == want.tobytes(), f"{t.name}: data differs"
    seen.add(names[t.name])
assert seen == set(reference), f"GGUF lacks {set(reference) - seen}"


# The hf export run by an independent implementation: every field of config.json it needs is used.
def llama_logits(w, c, tokens):
    n, hd = len(tokens), c["head_dim"]
    heads, kv_heads = c["num_attention_heads"], c["num_key_value_heads"]

    def norm(x, weight):
        x64 = x.astype(np.float64)
        return (x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + c["rms_norm_eps"]) * weight).astype(np.float32)

    inv = c["rope_theta"] ** (-np.arange(0, hd, 2) / hd)
    angles = np.outer(np.arange(n), inv)
    cos, sin = np.concatenate([np.cos(angles)] * 2, -1), np.concatenate([np.sin(angles)] * 2, -1)

    def rope(x):  # [heads, n, hd], rotate-half
        half = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * cos + half * sin

    h = w["model.embed_tokens.weight"][tokens]
    causal = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = norm(h, w[p + "input_layernorm.weight"])
        q = rope((x @ w[p + "self_attn.q_proj.weight"].T).reshape(n, heads, hd).transpose(1, 0, 2))
        k = rope((x @ w[p + "self_attn.k_proj.weight"].T).reshape(n, kv_heads, hd).transpose(1, 0, 2))
        v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(n, kv_heads, hd).transpose(1, 0, 2)
        k, v = np.repeat(k, heads // kv_heads, 0), np.repeat(v, heads // kv_heads, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + causal
        a = np.exp(s - s.max(-1, keepdims=True))
        o = ((a / a.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, heads * hd)
        h = h + o @ w[p + "self_attn.o_proj.weight"].T
        x = norm(h, w[p + "post_attention_layernorm.weight"])
        gate = x @ w[p + "mlp.gate_proj.weight"].T
        h = h + ((gate / (1 + np.exp(-gate))) * (x @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    return norm(h, w["model.norm.weight"]) @ head.T


dumped = load_file(loom_logits)
ours = llama_logits(single, config, dumped["tokens"])
error = np.abs(ours - dumped["logits"]).max() / np.abs(dumped["logits"]).max()
assert error < 1e-4, f"NumPy Llama on the hf export vs Loom's logits: relative error {error:.2e}"

print(f"independent readers agree: {len(reference)} tensors (safetensors f32 and f16 shards, GGUF), "
      f"{len(expect) + 3} GGUF keys, the byte-level tokenizer; NumPy Llama on the hf export vs Loom's logits: "
      f"{error:.1e} relative")
