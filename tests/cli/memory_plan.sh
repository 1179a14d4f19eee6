#!/usr/bin/env bash
# End-to-end test of the real memory-plan binary: table output, exit codes 0/1/2, one-line
# errors, --help. Usage: bash memory_plan.sh BIN_DIR SOURCE_DIR
set -u

bin="$1/memory-plan"
src="$2"
recipe="$src/recipes/llama2/7b_pretrain_8gpu.yaml"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

# run NAME ARGS...: runs the binary, leaving the exit code in $rc and output in $tmp/NAME.{out,err}.
run() {
  local name="$1"
  shift
  "$bin" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
}

expect_rc() {  # NAME EXPECTED
  if [ "$rc" -eq "$2" ]; then
    pass "$1 exits $2"
  else
    fail "$1 exits $rc, expected $2 (stderr: $(cat "$tmp/$1.err"))"
  fi
}

expect_in() {  # NAME FILE TEXT
  if grep -qF -- "$3" "$2"; then pass "$1 shows '$3'"; else fail "$1: '$3' not in $(basename "$2")"; fi
}

# One line on stderr, starting "memory-plan: error: ", nothing on stdout.
expect_one_error_line() {  # NAME
  local err="$tmp/$1.err" lines
  lines=$(wc -l <"$err")
  if [ "$lines" -eq 1 ] && [ "$(tail -c 1 "$err" | od -An -c | tr -d ' ')" = '\n' ]; then
    pass "$1: one line on stderr"
  else
    fail "$1: $lines lines on stderr: $(cat "$err")"
  fi
  if head -n 1 "$err" | grep -q '^memory-plan: error: '; then
    pass "$1: error prefix"
  else
    fail "$1: no 'memory-plan: error: ' prefix"
  fi
  if [ ! -s "$tmp/$1.out" ]; then pass "$1: nothing on stdout"; else fail "$1: wrote to stdout"; fi
}

[ -x "$bin" ] || { echo "FAIL: no executable $bin"; exit 1; }

# A normal run: exit 0, the table with the parameter count and the peak.
run table "$recipe"
expect_rc table 0
expect_in table "$tmp/table.out" "6,738,415,616"
expect_in table "$tmp/table.out" "peak"
expect_in table "$tmp/table.out" "per rank: fits"
[ -s "$tmp/table.err" ] && fail "table: unexpected stderr: $(cat "$tmp/table.err")"

# --json is one JSON object with the same parameter count.
run json "$recipe" --json
expect_rc json 0
expect_in json "$tmp/json.out" '"parameters": 6738415616'
if command -v python3 >/dev/null 2>&1; then
  sums='import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if sum(b["bytes"] for b in j["breakdown"]) == j["per_rank"]["peak_bytes"] else 1)'
  if python3 -c "$sums" "$tmp/json.out"; then
    pass "json: breakdown sums to the peak"
  else
    fail "json: not valid JSON or the breakdown does not sum to per_rank.peak_bytes"
  fi
fi

# Overrides from the command line: ZeRO-3 is reflected in the settings line.
run override "$recipe" zero.stage=3 train.micro_batch_size=4
expect_rc override 0
expect_in override "$tmp/override.out" "ZeRO-3"
expect_in override "$tmp/override.out" "micro-batch 4 x 4096 tokens"

# --fit: something fits in 80 GiB (exit 0), nothing in 4 GiB (exit 1).
run fit80 "$recipe" --fit 80GiB
expect_rc fit80 0
expect_in fit80 "$tmp/fit80.out" "recommended:"
run fit4 "$recipe" --fit 4GiB
expect_rc fit4 1
expect_in fit4 "$tmp/fit4.out" "nothing fits"

# Bad input: exit 2 and a single error line naming the key.
run unknown_key "$recipe" train.micro_bach_size=4
expect_rc unknown_key 2
expect_one_error_line unknown_key
expect_in unknown_key "$tmp/unknown_key.err" "train.micro_bach_size"
expect_in unknown_key "$tmp/unknown_key.err" "did you mean 'train.micro_batch_size'?"

run missing "$tmp/no_such_recipe.yaml"
expect_rc missing 2
expect_one_error_line missing

printf 'defaults: [%s]\ntrain:\n  micro_batch_size: four\n' "$recipe" >"$tmp/wrong_type.yaml"
run wrong_type "$tmp/wrong_type.yaml"
expect_rc wrong_type 2
expect_one_error_line wrong_type
expect_in wrong_type "$tmp/wrong_type.err" "$tmp/wrong_type.yaml:3:21: train.micro_batch_size: "

run no_recipe
expect_rc no_recipe 2
expect_one_error_line no_recipe

run bad_option "$recipe" --no-such-option
expect_rc bad_option 2
expect_one_error_line bad_option

# --help and --list-keys need no recipe.
run help --help
expect_rc help 0
expect_in help "$tmp/help.out" "--fit"
run list_keys --list-keys
expect_rc list_keys 0
expect_in list_keys "$tmp/list_keys.out" "train.micro_batch_size"

# Regression: a sweep range ending at INT64_MAX used to wrap around and never end. Expected:
# exit 2 with one error line. A timeout keeps a regression from hanging the suite (no memory
# cap: AddressSanitizer reserves a large address space and would fail under `ulimit -v`).
rc=0
huge=9223372036854775806..9223372036854775807
timeout 20 "$bin" "$recipe" --sweep "train.micro_batch_size=$huge" \
  >"$tmp/sweep_overflow.out" 2>"$tmp/sweep_overflow.err" || rc=$?
expect_rc sweep_overflow 2
expect_one_error_line sweep_overflow

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
