#!/usr/bin/env python3
"""Writes a folder of text files whose lengths follow a lognormal distribution, for
`loom data prepare`: the long-tailed document mixes placement is measured on.

    python3 scripts/long_tailed_corpus.py OUT_DIR [--docs 400] [--median 1024] [--sigma 1.2]
        [--max 8192] [--seed 1]

Lengths are in bytes, which Loom's byte-level tokenizer turns into as many tokens. The text is
words drawn at random from a small vocabulary: it has no meaning, only lengths.
"""
import argparse
import math
import pathlib
import random

WORDS = ("the of and to in is was for on that with as by at from this which be are it an or had "
         "not but were have one all their there been has more when who will would can about").split()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--median", type=float, default=1024)
    parser.add_argument("--sigma", type=float, default=1.2)
    parser.add_argument("--max", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.docs):
        length = min(args.max, max(16, int(rng.lognormvariate(math.log(args.median), args.sigma))))
        words = []
        size = 0
        while size < length:
            words.append(rng.choice(WORDS))
            size += len(words[-1]) + 1
        (out / f"doc{i:05d}.txt").write_text(" ".join(words)[:length])


if __name__ == "__main__":
    main()
