#!/usr/bin/env bash
# Packing benchmark on real corpora from Debian packages: `fortunes` (thousands of short
# documents, split on "%" lines) and `python3.11-doc` (497 long reStructuredText sources).
# For packing_length 512, 2048 and 8192 and each strategy: packing efficiency (real tokens /
# slots), rows against the lower bound ceil(tokens / L), and throughput; then pre-tokenized
# input (JSONL input_ids) in tokens/s against this machine's `cat file > /dev/null` rate.
# Usage: scripts/bench-pack.sh [OUT_DIR]     (results: OUT_DIR/pack-bench.json and a table)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/bench-pack}"
mkdir -p "$out"

scripts/setup.sh fortunes python3.11-doc
cmake --preset release >/dev/null
cmake --build --preset release --target pack-data >/dev/null
bin=build/release/bin/pack-data

fortunes=$(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort | paste -sd, -)
pydocs=$(find /usr/share/doc/python3.11/html/_sources -type f -name '*.txt' | sort | paste -sd, -)

results="$out/pack-bench.jsonl"
: > "$results"
printf '%-10s %6s %-7s %10s %12s %10s %9s %12s\n' corpus L strategy rows lower-bound efficiency seconds tokens/s
for corpus in fortunes pydocs; do
  if [ "$corpus" = fortunes ]; then files=$fortunes; extra=('data.text_delimiter="\n%\n"'); else files=$pydocs; extra=(); fi
  for L in 512 2048 8192; do
    for strategy in greedy bfd spfhp; do
      json=$("$bin" /dev/null "data.inputs=[$files]" data.format=text "${extra[@]}" data.tokenizer=byte \
        data.packing_length=$L data.strategy=$strategy \
        data.output="$out/$corpus-$L-$strategy" --skip-bad --quiet --json)
      echo "$json" | python3 -c "
import json,sys
j=json.load(sys.stdin); s=j['stats']; t=j['timing']
print(json.dumps({'corpus':'$corpus','L':$L,'strategy':'$strategy','rows':s['rows'],'lower_bound':s['rows_lower_bound'],
 'efficiency':s['efficiency'],'seconds':t['seconds'],'tokens_per_second':t['tokens_per_second'],'documents':s['documents']}))" >> "$results"
      tail -n 1 "$results" | python3 -c "
import json,sys
r=json.load(sys.stdin)
print('%-10s %6d %-7s %10d %12d %9.2f%% %9.2f %12.3g'%(r['corpus'],r['L'],r['strategy'],r['rows'],r['lower_bound'],100*r['efficiency'],r['seconds'],r['tokens_per_second']))"
    done
  done
done

# Pre-tokenized input: the python docs as byte ids in JSONL, packed at 2048, against cat.
pre="$out/pretokenized.jsonl"
python3 - "$pre" <<'PY'
import json, pathlib, sys
root = pathlib.Path('/usr/share/doc/python3.11/html/_sources')
with open(sys.argv[1], 'w') as f:
    for _ in range(8):  # ~8 x 11 MB of ids so the run is long enough to time
        for p in sorted(root.rglob('*.txt')):
            f.write(json.dumps({'input_ids': list(p.read_bytes())}) + '\n')
PY
size=$(stat -c %s "$pre")
cat_s=$( { /usr/bin/time -f %e cat "$pre" > /dev/null; } 2>&1 )
json=$("$bin" /dev/null "data.inputs=[$pre]" data.tokenizer=byte \
  data.packing_length=2048 data.output="$out/pretokenized" --quiet --json)
echo "$json" | python3 -c "
import json,sys
j=json.load(sys.stdin); t=j['timing']; size=$size; cat_s=max($cat_s,1e-3)
print()
print('pre-tokenized JSONL: %.1f MB, %.3g tokens/s, %.1f MB/s of input; cat reads it at %.0f MB/s (ratio %.2f)'%(
  size/1e6, t['tokens_per_second'], t['input_mb_per_second'], size/1e6/cat_s, t['input_mb_per_second']/(size/1e6/cat_s)))"
