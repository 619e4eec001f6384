#!/usr/bin/env bash
# Loom's exports read by independent readers (the `safetensors`, `gguf` and `tokenizers` Python
# packages, installed into a virtualenv under the build dir), the hf export run by a NumPy Llama
# against Loom's logits, datasets written by h5py read by Loom, and the run's TensorBoard events read
# by the tensorboard package's reader. Skips (exit 77) when the
# virtualenv cannot be made.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
venv=$build/interop-venv
# Skips only where the virtualenv cannot be made, and then says why in pip's or venv's own words.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import safetensors, gguf, tokenizers, numpy, h5py, tensorboard" 2>/dev/null; then
  rm -rf "$venv"
  log=$(mktemp)
  if ! python3 -m venv "$venv" >"$log" 2>&1 ||
     ! timeout 300 "$venv/bin/pip" install -q safetensors numpy gguf tokenizers h5py tensorboard >>"$log" 2>&1; then
    echo "SKIPPED: cannot make a virtualenv with safetensors, numpy, gguf, tokenizers, h5py and tensorboard: $(tail -n 3 "$log" | tr '\n' ' ')"
    rm -rf "$venv" "$log"
    exit 77
  fi
  rm -f "$log"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
loom=$build/loom
"$loom" data synth --task passkey --out "$work/pk.h5" --docs 40 --min-len 200 --max-len 500 >/dev/null
"$loom" train --config "$here/../../configs/tiny.yaml" --set data.path="$work/pk.h5" --set run.dir="$work/run" \
  --set train.steps=2 --set log.progress=false --set log.tensorboard=true >/dev/null
"$loom" export --checkpoint "$work/run" --format hf --out "$work/hf"
"$loom" export --checkpoint "$work/run" --format hf --out "$work/hf-f16" --dtype f16 --shard-mb 0.1
"$loom" export --checkpoint "$work/run" --format gguf --out "$work/model.gguf"
"$loom" eval --checkpoint "$work/run" --dump-logits "$work/logits.safetensors" --text "The pass key is 71432. Remember it."
"$venv/bin/python" "$here/check_exports.py" "$work/run/checkpoints/step-2" "$work/hf" "$work/hf-f16" "$work/model.gguf" \
  "$work/logits.safetensors"
# scripts/tokenize_hf.py with the exported tokenizer makes the dataset `loom data prepare` makes.
mkdir "$work/text" && cp "$here/../../README.md" "$work/text/"
"$venv/bin/python" "$here/../../scripts/tokenize_hf.py" --tokenizer "$work/hf/tokenizer.json" --out "$work/hf.h5" "$work/text"
"$loom" data prepare --input "$work/text" --out "$work/loom.h5" >/dev/null
"$venv/bin/python" -c "
import h5py, sys
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert (a['tokens'][:] == b['tokens'][:]).all() and (a['doc_offsets'][:] == b['doc_offsets'][:]).all()
print('tokenize_hf.py with the exported tokenizer.json = loom data prepare:', len(a['tokens']), 'tokens')
" "$work/hf.h5" "$work/loom.h5"
"$loom" data inspect "$work/hf.h5" >/dev/null
# A version 1 dataset (one answer span per document, -1 for none), as older Loom and other writers
# made them, still reads: two documents with answers, one without.
"$venv/bin/python" -c "
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], 'w') as f:
    f['tokens'] = np.arange(12, dtype=np.int32)
    f['doc_offsets'] = np.array([0, 4, 8, 12], dtype=np.int64)
    f['answer_start'] = np.array([2, -1, 1], dtype=np.int64)
    f['answer_len'] = np.array([2, 0, 3], dtype=np.int64)
    f['evidence_start'] = np.array([0, -1, 0], dtype=np.int64)
    for k, v in [('format', 'loom-tokens'), ('tokenizer', 'byte'), ('task', 'passkey')]:
        f.attrs.create(k, np.bytes_(v))
    f.attrs.create('version', np.int64(1)); f.attrs.create('vocab_size', np.int64(259))
" "$work/v1.h5"
"$loom" data inspect "$work/v1.h5" | grep -q "3 documents, 12 tokens, 2 answer spans"
echo "a version 1 dataset reads: 2 answer spans in 3 documents"
# The run's TensorBoard scalars, read by tensorboard's own reader, are metrics.jsonl's losses.
"$venv/bin/python" -c "
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(sys.argv[1]); events.Reload()
loss = [(e.step, e.value) for e in events.Scalars('train/loss')]
steps = [json.loads(l) for l in open(sys.argv[2]) if 'grad_norm' in l]
assert [s for s, _ in loss] == [r['step'] for r in steps], (loss, steps)
assert all(abs(v - r['loss']) <= 1e-6 * abs(r['loss']) for (_, v), r in zip(loss, steps)), (loss, steps)
print('tensorboard reads the run:', len(loss), 'loss scalars equal to metrics.jsonl')
" "$work/run/tensorboard" "$work/run/metrics.jsonl"
