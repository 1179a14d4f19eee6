#!/usr/bin/env bash
# End-to-end test of bench-attn on the CPU: the table, --json lines with the documented fields,
# --csv with the same fields, --output, a recipe plus undotted overrides, a shard as the source
# of varlen lengths, and one-line errors with exit code 2 for bad settings.
# Usage: bash bench_attn.sh BIN_DIR SOURCE_DIR
set -u
bin="$1"
src="$2"
# shellcheck source=support/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/harness.sh"
tool="$bin/bench-attn"
recipe="$src/recipes/bench/attention_cpu.yaml"
small=(seq_lens=128,256 tokens=512 head_dim=32 heads=4 kv_heads=2 repeats=2 warmup=0 threads=2)

run table "$recipe" "${small[@]}"
check "table exits 0" test "$rc" -eq 0
check "table has a row per impl, length, layout and mode (2 x 2 x 2 x 2)" \
  test "$(grep -cE '^(naive|flash) ' "$tmp/table.out")" -eq 16
check "flash rows compare with naive" grep -qE '^flash .*x faster, err [0-9.]+x' "$tmp/table.out"
check "progress goes to stderr" grep -q 'bench-attn: \[1/4\]' "$tmp/table.err"

run json "${small[@]}" mode=fwd,fwd_bwd causal=true,false --json --output "$tmp/rows.jsonl"
check "--json exits 0" test "$rc" -eq 0
check "--json: one object per measurement with the documented fields" python3 - "$tmp/json.out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == 2 * 2 * 2 * 2, len(rows)  # impls x lengths x masks x modes
for r in rows:
    for key in ("impl", "device", "seq_len", "mode", "ms", "tflops", "max_abs_err", "memory_bytes", "error_ok",
                "max_doc_len"):
        assert key in r, key
    assert r["deterministic"] is True, r  # the CPU kernels always are
    assert r["max_doc_len"] == r["seq_len"] and r["docs"] == r["batch"], r  # dense: a document a row
    assert r["device"].startswith("cpu"), r
    assert r["ms"] > 0 and r["tflops"] > 0 and r["error_ok"], r
    assert r["max_abs_err"] < 1e-4, r
    assert r["mode"] in ("fwd", "fwd_bwd")
    if r["impl"] == "flash":
        assert r["speedup_vs_naive"] > 0 and r["naive_err"] > 0, r
    # FlashAttention's FLOP convention: forward 4 s^2 h d per document, halved when causal.
    fwd = 4 * r["seq_len"] ** 2 * r["heads"] * r["head_dim"] * r["batch"] / (2 if r["causal"] else 1)
    flops = fwd * (3.5 if r["mode"] == "fwd_bwd" else 1)
    assert abs(r["tflops"] - flops / (r["ms"] * 1e-3) * 1e-12) <= 1e-9 * r["tflops"], r
PY
check "--output writes the same JSON lines" cmp -s "$tmp/json.out" "$tmp/rows.jsonl"

run csv "${small[@]}" layout=varlen --csv --quiet
check "--csv exits 0" test "$rc" -eq 0
check "--csv has a header and 8 rows with the JSON fields" python3 - "$tmp/csv.out" "$tmp/json.out" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 8, len(rows)
assert list(rows[0]) == list(json.loads(open(sys.argv[2]).readline())), list(rows[0])
assert all(r["layout"] == "varlen" and int(r["docs"]) > int(r["batch"]) for r in rows)
PY
check "--quiet prints no progress" test ! -s "$tmp/csv.err"

# Varlen lengths from a packed shard (pack-data's output on the shipped samples).
"$bin/pack-data" "$src/recipes/tiny/pack_cpu.yaml" data.output="$tmp/packed" --quiet >/dev/null ||
  { echo "FAIL: packing the samples"; exit 1; }
run shard "${small[@]}" layout=varlen doc_lengths="$tmp/packed/shard-00000.bin" mode=fwd --json --quiet
check "varlen lengths from a shard" test "$rc" -eq 0 -a "$(wc -l <"$tmp/shard.out")" -eq 4

# Equal document lengths: 4 a row, so that a varlen row compares with dense rows of its documents' length.
run equal "${small[@]}" layout=varlen doc_lengths=equal mode=fwd --json --quiet
check "varlen with equal lengths: 4 documents of seq_len / 4 a row" python3 - "$tmp/equal.out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == 4, len(rows)
assert all(r["docs"] == 4 * r["batch"] and r["max_doc_len"] * 4 == r["seq_len"] for r in rows), rows
PY

run skip "${small[@]}" max_naive_bytes=1KiB mode=fwd --json --quiet
check "naive is skipped with a reason when its probabilities exceed the budget" \
  grep -q '"impl":"naive".*"skipped":"probabilities need' "$tmp/skip.out"

run unknown "$recipe" seq_len=512
check "unknown key exits 2" test "$rc" -eq 2
check "unknown key: one line with a suggestion" one_error_line unknown "bench.seq_len: unknown key; did you mean 'bench.seq_lens'"
run kv kv_heads=3
check "kv_heads not dividing heads exits 2" test "$rc" -eq 2
check "kv_heads: one line" one_error_line kv "bench.kv_heads: must divide bench.heads"
run dtype "$recipe" dtype=bf16
check "bf16 on the cpu exits 2" test "$rc" -eq 2
check "bf16 on the cpu: one line" one_error_line dtype "bench.dtype: bf16 needs bench.device=cuda"
printf 'bench:\n  seq_lens: [128, oops]\n' >"$tmp/bad.yaml"
run badyaml "$tmp/bad.yaml"
check "a bad list item exits 2" test "$rc" -eq 2
check "a bad list item names file:line and key" one_error_line badyaml "bad.yaml:2:.*bench.seq_lens: expected an integer, got 'oops'"
run nofile "$tmp/missing.yaml"
check "a missing recipe exits 2" test "$rc" -eq 2
run bulk "$recipe" dq_reduction=bulk
check "bulk dQ reductions on the cpu exit 2" test "$rc" -eq 2
check "bulk dQ reductions on the cpu: one line" one_error_line bulk "bench.dq_reduction: bulk needs bench.device=cuda"
run help --help
check "--help shows the example" grep -q "seq_lens=1024,8192" "$tmp/help.out"

[ "$failures" -eq 0 ] && echo "all checks passed" || { echo "$failures check(s) failed"; exit 1; }
