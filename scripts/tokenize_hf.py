#!/usr/bin/env python3
"""Tokenizes text files with a Hugging Face tokenizer (tokenizer.json) into Loom's HDF5 dataset, for
models imported with `loom import` whose tokenizer is not Loom's byte-level one.

    pip install tokenizers h5py numpy
    scripts/tokenize_hf.py --tokenizer path/to/tokenizer.json --out data.h5 FILE_OR_DIR...

One document per file (every file under a directory), wrapped in the BOS and EOS tokens that
tokenizer_config.json (next to tokenizer.json) names, as Loom wraps its own documents; the
dataset's vocab_size is the tokenizer's, which must not exceed the model's `vocab_size` (the
trainer checks). The layout is the one
runtime/data/token_dataset.h documents."""
import argparse
import json
import os

import h5py
import numpy as np
from tokenizers import Tokenizer


def files(paths):
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in sorted(os.walk(path)):
                for name in sorted(names):
                    yield os.path.join(root, name)
        else:
            yield path


def special_ids(tokenizer, tokenizer_json):
    """The ids of the BOS and EOS tokens tokenizer_config.json names (None where it names none)."""
    path = os.path.join(os.path.dirname(os.path.abspath(tokenizer_json)), "tokenizer_config.json")
    config = json.load(open(path)) if os.path.exists(path) else {}

    def lookup(key):
        token = config.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        return tokenizer.token_to_id(token) if token else None

    return lookup("bos_token"), lookup("eos_token")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a Hugging Face tokenizer.json")
    parser.add_argument("--out", required=True, help="the HDF5 dataset to write")
    parser.add_argument("--no-bos-eos", action="store_true", help="do not wrap documents in BOS ... EOS")
    parser.add_argument("inputs", nargs="+", help="text files or folders")
    args = parser.parse_args()

    tokenizer = Tokenizer.from_file(args.tokenizer)
    bos, eos = (None, None) if args.no_bos_eos else special_ids(tokenizer, args.tokenizer)
    tokens, offsets = [], [0]
    for path in files(args.inputs):
        with open(path, encoding="utf-8", errors="replace") as f:
            ids = tokenizer.encode(f.read(), add_special_tokens=False).ids
        if ids:
            tokens.extend(([bos] if bos is not None else []) + ids + ([eos] if eos is not None else []))
            offsets.append(len(tokens))
    if len(offsets) == 1:
        raise SystemExit("no text found in " + " ".join(args.inputs))

    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.create_dataset("tokens", data=np.asarray(tokens, dtype=np.int32))
        f.create_dataset("doc_offsets", data=np.asarray(offsets, dtype=np.int64))
        # Fixed-length strings and int64 scalars: what Loom's reader expects.
        f.attrs.create("format", np.bytes_("loom-tokens"))
        f.attrs.create("version", np.int64(2))
        f.attrs.create("tokenizer", np.bytes_("hf:" + os.path.basename(os.path.dirname(os.path.abspath(args.tokenizer)))))
        f.attrs.create("vocab_size", np.int64(tokenizer.get_vocab_size(with_added_tokens=True)))
        f.attrs.create("task", np.bytes_("text"))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(offsets) - 1} documents, {len(tokens)} tokens, "
          f"vocab size {tokenizer.get_vocab_size(with_added_tokens=True)}")


if __name__ == "__main__":
    main()
