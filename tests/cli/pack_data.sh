#!/usr/bin/env bash
# End-to-end test of the real pack-data binary: pack the shipped samples, inspect a row, and the
# exit codes and one-line errors of bad input. Usage: bash pack_data.sh BIN_DIR SOURCE_DIR
set -u
bin="$1/pack-data"
src="$2"
recipe="$src/recipes/tiny/pack_cpu.yaml"
# shellcheck source=support/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/harness.sh"
tool="$bin"

run pack "$recipe" data.output="$tmp/out" --quiet
check "pack exits 0" test "$rc" -eq 0
check "summary shows the documents" grep -q "documents .* 74" "$tmp/pack.out"
check "a shard and a manifest" test -f "$tmp/out/shard-00000.bin" -a -f "$tmp/out/manifest.json"
check "no staging directory left" test -z "$(ls -d "$tmp"/out.tmp-* 2>/dev/null)"

run inspect inspect "$tmp/out/shard-00000.bin" --rows 0..1 --json
check "inspect exits 0" test "$rc" -eq 0
check "inspect verifies the checksum" grep -q '"checksum": "ok"' "$tmp/inspect.out"

run json "$recipe" data.output="$tmp/out2" data.strategy=greedy --quiet --json
check "--json manifest" grep -q '"strategy": "greedy"' "$tmp/json.out"

printf '{"text": "fine"}\n{"text": broken}\n' >"$tmp/bad.jsonl"
run bad "$recipe" "data.inputs=[$tmp/bad.jsonl]" data.output="$tmp/out3" --quiet
check "malformed JSON exits 2" test "$rc" -eq 2
check "the error names file:line" one_error_line bad "$tmp/bad.jsonl:2:"
check "nothing left behind" test ! -e "$tmp/out3"
run skip "$recipe" "data.inputs=[$tmp/bad.jsonl]" data.output="$tmp/out3" --quiet --skip-bad --json
check "--skip-bad exits 0" test "$rc" -eq 0
check "--skip-bad counts the record" grep -q '"malformed_json": 1' "$tmp/skip.out"

cp "$tmp/out/shard-00000.bin" "$tmp/corrupt.bin"
printf 'X' | dd of="$tmp/corrupt.bin" bs=1 seek=200 conv=notrunc status=none
run corrupt inspect "$tmp/corrupt.bin" --tokenizer byte
check "a corrupt shard exits 2" test "$rc" -eq 2
check "a corrupt shard is one error line" one_error_line corrupt "corrupt.bin"

touch "$tmp/file"
run unwritable "$recipe" data.output="$tmp/file/sub" --quiet
check "an output under a file fails" test "$rc" -ne 0
check "that failure is one error line" one_error_line unwritable "file"

run nothing "$recipe" data.inputs=[] --quiet
check "no inputs exits 2" test "$rc" -eq 2

[ "$failures" -eq 0 ] && echo "all checks passed" || { echo "$failures check(s) failed"; exit 1; }
