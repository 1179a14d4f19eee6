#!/usr/bin/env bash
# train under mpirun with ZeRO stages 0-3 on a tiny Llama: every stage at -np 2 and -np 4
# trains what one process trains on the same global batch (losses and final weights), each
# rank's measured peak equals the plan and memory-plan, the model states shrink as the ZeRO
# formulas say, a run resumes under another world size and stage, and the failure paths
# (recipes that differ across ranks, a killed rank, a recipe planned for another world
# size) end with a clear error and a non-zero exit within a bounded time, never a hang.
# Usage: bash zero.sh BIN_DIR SOURCE_DIR
set -u
bin="$1"
src="$2"
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIP: mpirun not found (install OpenMPI to run the distributed tests)"
  exit 0
fi
# shellcheck source=support/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/harness.sh"
# shellcheck source=support/mpi.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/mpi.sh"

# The checks below start python dozens of times: once through a version-manager shim (pyenv
# takes ~1 s a call on a busy 2-core machine) is enough.
py="$(python3 -c 'import sys; print(sys.executable)')" || { echo "FAIL: python3 is needed"; exit 1; }
python3() { "$py" "$@"; }

launch() {  # NAME COMMAND...: exit code in $rc, seconds in $secs, output in $tmp/NAME.{out,err}
  local name="$1"; shift
  local t0; t0=$(date +%s%N)
  timeout 120 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  secs=$(( ($(date +%s%N) - t0) / 1000000 ))
  secs="$((secs / 1000)).$(printf %03d $((secs % 1000)))"
}
run() {  # NAME NP ARGS...: train (under mpirun when NP > 1), output.dir $tmp/NAME unless given
  local name="$1" np="$2"; shift 2
  local with=(); [ "$np" -gt 1 ] && with=("${mpi[@]}" -np "$np")
  launch "$name" "${with[@]}" "$bin/train" "$recipe" "${tiny[@]}" output.dir="$tmp/$name" "$@"
  echo "   $name: -np $np ${*:-} -> exit $rc in ${secs} s"
}
show() { sed 's/^/   | /' "$tmp/$1.out" "$tmp/$1.err" | grep -v '^   | *$' | head -n "${2:-20}"; }
failed_within() {  # SECONDS: non-zero exit, not killed by `timeout`, within SECONDS
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && [ "${secs%.*}" -lt "$1" ]
}
# shellcheck source=support/train_json.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/train_json.sh"
close() {  # TOLERANCE A B: each step of A has B's loss within relative TOLERANCE (0: bit-identical)
  python3 -c 'import sys
a, b = (dict(l.split() for l in open(f)) for f in sys.argv[2:])
ok = a and all(k in b and abs(float(v) - float(b[k])) <= float(sys.argv[1]) * abs(float(b[k])) for k, v in a.items())
if not ok: print("      losses:", a, "vs", b)
sys.exit(0 if ok else 1)' "$1" <(losses "$2") <(losses "$3")
}
ranks_saying() {  # NAME PATTERN: the ranks R whose line "train: error: rank R on HOST: PATTERN" NAME's stderr holds
  grep -Eo "^train: error: rank [0-9]+ on [^:]+: $2" "$tmp/$1.err" | cut -d" " -f4 | sort -n | xargs
}
last_step() { find "$tmp/$1/checkpoints" -maxdepth 1 -name 'step_*' | sort | tail -n 1; }
same_weights() {  # NAME NAME: final model.safetensors agree: max |diff| <= 1e-5 max |w|, tensor by tensor
  python3 -c 'import array,json,struct,sys
def load(path):
    raw = open(path, "rb").read()
    n, = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n]); head.pop("__metadata__", None)
    out = {}
    for name, t in head.items():
        assert t["dtype"] == "F32", (name, t["dtype"])
        a = array.array("f"); a.frombytes(raw[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]])
        if sys.byteorder == "big": a.byteswap()
        out[name] = a
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
bad = [k for k in a if k not in b or len(a[k]) != len(b[k]) or
       max(abs(x - y) for x, y in zip(a[k], b[k])) > 1e-5 * max(abs(x) for x in a[k])]
if bad or a.keys() != b.keys(): print("      tensors differ:", bad or sorted(a.keys() ^ b.keys()))
sys.exit(1 if bad or a.keys() != b.keys() else 0)' "$(last_step "$1")/model.safetensors" "$(last_step "$2")/model.safetensors"
}
plan() {  # NAME NP STAGE ARGS...: memory-plan --json for the same overrides in $tmp/NAME.plan
  local name="$1" np="$2" stage="$3"; shift 3
  "$bin/memory-plan" "$recipe" "${tiny[@]}" "$@" dist.world_size="$np" zero.stage="$stage" --json >"$tmp/$name.plan"
}
planned() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["per_rank"][sys.argv[2]])' "$tmp/$1.plan" "$2"; }
memory_matches_plan() {  # NAME: every rank's measured peak within 3% of the plan
  summary "$1" '(lambda m: len(m["per_rank_measured_peak_bytes"]) == s["world_size"] and abs(m["relative_error"]) <= 0.03
      and all(abs(p / m["planned_peak_bytes"] - 1) <= 0.03 for p in m["per_rank_measured_peak_bytes"]))(s["memory"])' |
    grep -qx True
}
zero_formulas() {  # NAME: params, grads, optimizer (measured and planned) as stage and world size say
  summary "$1" '(lambda P, N, z, c: all(c[k]["measured"] == c[k]["planned"] == n * (-(-P // N) if z >= s_ else P)
      for k, n, s_ in (("params", 4, 3), ("grads", 4, 2), ("optimizer", 8, 1))))(s["parameters"], s["world_size"],
      s["zero_stage"], s["memory"]["categories"])' | grep -qx True
}
memory_checks() {  # NAME NP STAGE ARGS...: the memory checks of one run
  local name="$1" np="$2" stage="$3"; shift 3
  plan "$name" "$np" "$stage" "$@"
  check "$name: every rank's measured peak = planned (within 3%)" memory_matches_plan "$name"
  check "$name: planned peak = memory-plan's per-rank peak" \
    test "$(summary "$name" 's["memory"]["planned_peak_bytes"]')" = "$(planned "$name" peak_bytes)"
  check "$name: params/grads/optimizer bytes follow ZeRO-$stage over $np rank(s)" zero_formulas "$name"
}

"$bin/pack-data" "$src/recipes/tiny/pack_cpu.yaml" data.packing_length=128 data.output="$tmp/packed" --quiet >/dev/null ||
  { echo "FAIL: packing the samples"; exit 1; }
recipe="$src/recipes/tiny/llama_pretrain_cpu.yaml"
tiny=(model.hidden_size=64 model.num_layers=3 model.num_heads=4 model.num_kv_heads=2 model.intermediate_size=172
      data.packing_length=128 train.micro_batch_size=1 "data.shards=[$tmp/packed]" optim.lr=3e-3 optim.warmup_steps=2
      train.steps=4 train.threads=1)

# 1. One global batch of 4 micro-batches: 1 process x 4, 2 ranks x 2, 4 ranks x 1. Losses may
# differ by the order of float reductions only (relative 1e-6); weights by 1e-5 of their scale.
run one 1 train.gradient_accumulation_steps=4 --json
check "one process: exit 0, 4 steps" test "$rc" -eq 0 -a "$(losses one | wc -l)" -eq 4
memory_checks one 1 0 train.gradient_accumulation_steps=4
for np in 2 4; do
  gas=$((4 / np))
  stages="0 1 2 3"; [ "$np" -eq 4 ] && stages="1 3"
  for stage in $stages; do
    name="np${np}z$stage"
    run "$name" "$np" train.gradient_accumulation_steps=$gas zero.stage="$stage" --json
    check "$name: exit 0" test "$rc" -eq 0
    [ "$rc" -eq 0 ] || show "$name"
    check "$name: losses within 1e-6 of one process" close 1e-6 "$name" one
    check "$name: final weights within 1e-5 of one process" same_weights "$name" one
    memory_checks "$name" "$np" "$stage" train.gradient_accumulation_steps=$gas
  done
done
# Stages 0 and 1 reduce whole gradients alike, stages 2 and 3 shard for shard alike; with one
# micro-batch per rank nothing is accumulated locally, so every stage adds the same way.
check "-np 2: stage 0 and stage 1 losses bit-identical" close 0 np2z0 np2z1
check "-np 2: stage 2 and stage 3 losses bit-identical" close 0 np2z2 np2z3
check "-np 4 one micro-batch per rank: stage 1 and stage 3 losses bit-identical" close 0 np4z1 np4z3

# 2. A layer-heavy model, where sharding outweighs the stage-3 gather buffers: the per-rank
# peak falls at every stage at -np 4 (the plan), and a stage-3 run measures what is planned.
big=(model.num_layers=6 model.hidden_size=128 model.intermediate_size=344 zero.bucket_elements=16384)
peaks=""
for stage in 0 1 2 3; do
  plan "big$stage" 4 "$stage" "${big[@]}"
  peaks+="$(planned "big$stage" peak_bytes) "
done
echo "   layer-heavy planned per-rank peaks at -np 4, stages 0-3: $peaks"
check "layer-heavy -np 4: planned per-rank peak falls from stage 0 to 3" \
  python3 -c 'import sys; p = list(map(int, sys.argv[1:])); sys.exit(0 if all(a > b for a, b in zip(p, p[1:])) else 1)' \
  $peaks  # word splitting wanted: one argument per stage
run big 4 "${big[@]}" train.gradient_accumulation_steps=1 train.steps=2 zero.stage=3 output.checkpoints=false --json
check "layer-heavy -np 4 stage 3: exit 0" test "$rc" -eq 0
memory_checks big 4 3 "${big[@]}" train.gradient_accumulation_steps=1 train.steps=2 output.checkpoints=false

# 3. Stopped at step 2 on 2 ranks at stage 2, resumed on 4 ranks at stage 3 and on one process:
# steps 3-4 as the uninterrupted run prints them.
run r 2 train.gradient_accumulation_steps=2 zero.stage=2 train.exit_interval=2 --json
check "-np 2 stage 2 stops at step 2" test "$rc" -eq 0 -a "$(losses r | cut -d' ' -f1 | xargs)" = "1 2"
check "... losses within 1e-6 of one process" close 1e-6 r one
check "... leaving one optimizer shard per rank" \
  test -f "$(last_step r)/optimizer-00000-of-00002.safetensors" -a -f "$(last_step r)/optimizer-00001-of-00002.safetensors"
cp -r "$tmp/r" "$tmp/r1"
run r4 4 output.dir="$tmp/r" train.gradient_accumulation_steps=1 zero.stage=3 --resume --json
check "resumed on -np 4 stage 3: exit 0, steps 3-4" test "$rc" -eq 0 -a "$(losses r4 | cut -d' ' -f1 | xargs)" = "3 4"
check "... losses within 1e-6 of the uninterrupted run" close 1e-6 r4 one
check "... final weights within 1e-5 of it" same_weights r one
check "... leaving one optimizer shard per rank of 4" test -f "$(last_step r)/optimizer-00003-of-00004.safetensors"
run r1 1 train.gradient_accumulation_steps=4 --resume --json
check "resumed on one process: exit 0, steps 3-4" test "$rc" -eq 0 -a "$(losses r1 | cut -d' ' -f1 | xargs)" = "3 4"
check "... losses within 1e-6 of the uninterrupted run" close 1e-6 r1 one

# 4. Failures: a non-zero exit within a bounded time and a clear message, never a hang.
# a. Ranks started with different recipes (MPMD: rank 1 has another learning rate).
launch mismatch "${mpi[@]}" -np 1 "$bin/train" "$recipe" "${tiny[@]}" output.dir="$tmp/mm" : \
  -np 1 "$bin/train" "$recipe" "${tiny[@]}" output.dir="$tmp/mm" optim.lr=1e-3
echo "   mismatch: -> exit $rc in $secs s"
check "recipes differ across ranks: non-zero exit within 30 s" failed_within 30
check "... every rank names both ranks and their hosts" test "$(ranks_saying mismatch "resolved recipe differs \
across ranks: rank 0 on [^ ]+ has [0-9a-f]{16}; rank 1 on [^ ]+ has [0-9a-f]{16}")" = "0 1"
show mismatch 4
# b. A rank killed mid-run: mpirun ends the job, or the survivor's collective times out.
kill_rank() {  # NAME MPIRUN_OPTIONS...: kill -9 the second rank once training runs; exit code in
  # $rc, seconds from the kill in $secs, $hung set when the job outlived 60 s (then ended here)
  local name="$1" job victim t0; shift
  "${mpi[@]}" "$@" -np 2 "$bin/train" "$recipe" "${tiny[@]}" output.dir="$tmp/$name" train.steps=100000 \
    dist.timeout_seconds=5 output.checkpoints=false --quiet >"$tmp/$name.out" 2>"$tmp/$name.err" &
  job=$!
  for _ in $(seq 600); do [ -e "$tmp/$name/metrics.jsonl" ] && break; sleep 0.1; done
  victim=$(pgrep -f "^$bin/train .*output.dir=$tmp/$name " | sort -n | sed -n 2p)
  t0=$(date +%s%N)
  [ -n "$victim" ] && kill -9 "$victim"
  for _ in $(seq 600); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
  hung=""
  if kill -0 "$job" 2>/dev/null; then hung=1; kill "$job"; fi
  wait "$job"
  rc=$?
  secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
  echo "   $name: rank pid ${victim:-(none found)} killed -> exit $rc in $secs s${hung:+; still running at 60 s: ended by the test}"
  [ -n "$victim" ]
}
check "killed rank: found and killed" kill_rank kill
check "... the job exits non-zero by itself within 30 s" eval '[ "$rc" -ne 0 ] && [ -z "$hung" ] && [ "$secs" -lt 30 ]'
check "... and the failure is named" \
  grep -Eq "exited on signal|terminated|did not complete in 5 s \(a rank died or diverged\)" "$tmp/kill.err"
show kill 8
# The same with mpirun told to keep the job: the survivor's timeout (5 s) must end it with
# "train: error: rank R on HOST: <collective> did not complete in 5 s" and MPI_Abort.
check "killed rank, job kept: found and killed" kill_rank kill_kept --mca orte_abort_on_non_zero_status 0
check "... the job exits non-zero by itself within 30 s" eval '[ "$rc" -ne 0 ] && [ -z "$hung" ] && [ "$secs" -lt 30 ]'
check "... the survivor times out naming its rank and host once" grep -Eq \
  "^train: error: rank [01] on [^:]+: [^:]* did not complete in 5 s \(a rank died or diverged\)$" "$tmp/kill_kept.err"
show kill_kept 8
# c. A recipe planned for 3 ranks started on 2: every rank refuses it, exit 2. Once as is, once
# with each rank's exit code recorded (mpirun told to let every rank finish: it then exits 0).
run ws 2 dist.world_size=3
check "dist.world_size=3 under -np 2: mpirun exits 2" test "$rc" -eq 2
check "... every rank names dist.world_size" \
  test "$(grep -o "dist.world_size: is 3 but mpirun started 2 ranks" "$tmp/ws.err" | wc -l)" -eq 2
launch ws_each "${mpi[@]}" --mca orte_abort_on_non_zero_status 0 -np 2 sh -c \
  '"$@"; rc=$?; echo $rc >"$0.$OMPI_COMM_WORLD_RANK"; exit $rc' "$tmp/ws.rc" \
  "$bin/train" "$recipe" "${tiny[@]}" output.dir="$tmp/ws" dist.world_size=3
check "... exit 2 on every rank" test "$(cat "$tmp"/ws.rc.* | xargs)" = "2 2"
show ws 4

[ "$failures" -eq 0 ] && echo "zero: all checks passed" || echo "zero: $failures check(s) failed"
[ "$failures" -eq 0 ]
