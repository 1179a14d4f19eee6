#!/usr/bin/env bash
# The communicator under a real launcher: comm-check with mpirun -np 2 and -np 4 (every
# collective, overlap, bitwise determinism), then the failure paths, each of which must end
# every rank with a clear error and a non-zero exit within a bounded time, never a hang:
# a recipe-hash mismatch, a rank that dies, a rank that stalls past the timeout. Also the
# single-process fallback, the torchrun-style launch that MPI cannot join, and the same checks
# over GPU buffers (NCCL) where the node has GPUs.
# Usage: bash dist.sh BIN_DIR SOURCE_DIR
set -u
bin="$1"
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIP: mpirun not found (install OpenMPI to run the distributed tests)"
  exit 0
fi
[ -x "$bin/comm-check" ] || { echo "FAIL: $bin/comm-check is missing"; exit 1; }
# shellcheck source=support/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/harness.sh"
# shellcheck source=support/mpi.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/mpi.sh"
run() {  # NAME NP ARGS...: exit code in $rc, seconds in $secs, output in $tmp/NAME.{out,err}
  local name="$1" np="$2"; shift 2
  local t0; t0=$(date +%s%N)
  timeout 60 "${mpi[@]}" -np "$np" "$bin/comm-check" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  secs=$(( ($(date +%s%N) - t0) / 1000000 ))
  secs="$((secs / 1000)).$(printf %03d $((secs % 1000)))"
  echo "   $name: -np $np $* -> exit $rc in ${secs} s"
}
show() { sed 's/^/   | /' "$tmp/$1.out" "$tmp/$1.err" | grep -v '^   | *$' | head -n "${2:-20}"; }
failed_within() {  # NAME: non-zero exit, not killed by `timeout`
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]
}

for np in 2 4; do
  run "np$np" "$np" --timeout 30
  check "-np $np: every collective, overlap and determinism" \
    eval '[ "$rc" -eq 0 ] && grep -q "world $np on .* 0 failures" "$tmp/np$np.out"'
  [ "$rc" -eq 0 ] && show "np$np" 4 || show "np$np"
done

run mismatch 4 --timeout 20 --mismatch-rank 1
check "recipe mismatch: non-zero exit" failed_within
check "recipe mismatch: every rank names rank 1 and its host" eval \
  '[ "$(grep -c "comm-check: error: rank [0-3] on .*: recipe hash differs across ranks: ranks 0,2-3 on .* have 000000005eed5eed; rank 1 on .* has 0000000badc0ffee" "$tmp/mismatch.err")" -eq 4 ]'
show mismatch 4

# A rank exits without MPI_Finalize: OpenMPI's mpirun ends the job itself, or (when it does
# not) the survivors' collective times out. Either way: bounded, non-zero, explained.
run die 4 --timeout 5 --die-rank 1
check "dead rank: non-zero exit within the timeout" eval 'failed_within && [ "${secs%.*}" -lt 30 ]'
check "dead rank: the failure is named" \
  grep -Eq "did not complete in 5 s \(a rank died or diverged\)|exited on signal|non-zero status|exiting improperly" \
  "$tmp/die.err"
show die 8
# The same with mpirun told to keep the job (as a launcher without that reflex would): the
# survivors' own timeout must end them.
mpi+=(--mca orte_abort_on_non_zero_status 0)
run die_kept 4 --timeout 5 --die-rank 1
check "dead rank, job kept: non-zero exit within the timeout" eval 'failed_within && [ "${secs%.*}" -lt 30 ]'
check "dead rank, job kept: survivors time out naming rank and host" \
  grep -Eq "comm-check: error: rank [023] on [^:]+: check_same\(recipe hash\) did not complete in 5 s \(a rank died or diverged\)" \
  "$tmp/die_kept.err"
show die_kept 6

# A rank alive but stuck: only the timeout can see it. The survivors time out, name the
# collective, rank and host, and MPI_Abort the job.
run stall 4 --timeout 3 --stall-rank 2
check "stalled rank: non-zero exit within the timeout" eval 'failed_within && [ "${secs%.*}" -lt 30 ]'
check "stalled rank: rank and host named, timeout explained" \
  grep -Eq "comm-check: error: rank [013] on [^:]+: check_same\(recipe hash\) did not complete in 3 s \(a rank died or diverged\)" \
  "$tmp/stall.err"
show stall 6

# Without a launcher: one process, the single backend.
"$bin/comm-check" --timeout 5 >"$tmp/single.out" 2>&1
rc=$?
check "single process without mpirun" eval '[ "$rc" -eq 0 ] && grep -q "single world 1 .* 0 failures" "$tmp/single.out"'
# torchrun-style variables only: MPI cannot join that rendezvous; say how to launch instead.
env RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \
  "$bin/comm-check" >"$tmp/torchrun.out" 2>&1
rc=$?
check "torchrun-style env without MPI: clear error" \
  eval '[ "$rc" -ne 0 ] && grep -q "launch with \`mpirun -np 2\` or \`srun --mpi=pmix -n 2\`" "$tmp/torchrun.out"'

# Device buffers: comm-check --device cuda runs the same checks over GPU memory. -np 1: the
# single backend's device copies, then (--backend nccl) NCCL itself on one GPU: init, every
# collective path, the rank-order sum kernel. -np 2 needs two GPUs (a GPU holds one rank of a
# NCCL communicator): NCCL across ranks, and a rank stalling before an fp32 collective, which
# the other must end by its timeout and ncclCommAbort, naming rank and host. No GPU: the skip
# path is checked, and a note says what did not run (never a skip line: the rest ran).
gpus=0
command -v nvidia-smi >/dev/null 2>&1 && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ "$gpus" -eq 0 ]; then
  run dev_none 1 --timeout 30 --device cuda
  # (A GPU that nvidia-smi cannot list, as in some containers, runs the checks instead.)
  check "--device cuda without a GPU: exits 0 and says why" eval '[ "$rc" -eq 0 ] && \
    grep -Eq "^SKIP: (no CUDA device|this build has no CUDA)|single \(device buffers\) world 1 .* 0 failures" \
    "$tmp/dev_none.out"'
  echo "note: nvidia-smi lists no GPU here: the device-buffer (NCCL) checks did not run"
else
  run dev1 1 --timeout 60 --device cuda
  check "-np 1 --device cuda: the single backend over device buffers" \
    eval '[ "$rc" -eq 0 ] && grep -q "single (device buffers) world 1 on .* 0 failures" "$tmp/dev1.out"'
  [ "$rc" -eq 0 ] && show dev1 4 || show dev1
  run dev1_nccl 1 --timeout 60 --device cuda --backend nccl
  if [ "$rc" -eq 0 ] && grep -q "^SKIP: this build has no NCCL" "$tmp/dev1_nccl.out"; then
    echo "note: this build has no NCCL: the NCCL checks did not run (install NCCL beside CUDA, reconfigure)"
  else
    check "-np 1 --device cuda --backend nccl: NCCL on one GPU" \
      eval '[ "$rc" -eq 0 ] && grep -q "nccl (device buffers) world 1 on .* 0 failures" "$tmp/dev1_nccl.out"'
    [ "$rc" -eq 0 ] && show dev1_nccl 4 || show dev1_nccl
    if [ "$gpus" -ge 2 ]; then
      run dev2 2 --timeout 60 --device cuda
      check "-np 2 --device cuda: NCCL across two GPUs, bitwise rank-order sums" \
        eval '[ "$rc" -eq 0 ] && grep -q "nccl (device buffers) world 2 on .* 0 failures" "$tmp/dev2.out"'
      [ "$rc" -eq 0 ] && show dev2 4 || show dev2
      run dev2_stall 2 --timeout 5 --device cuda --stall-rank 1 --stall-at all_reduce
      check "NCCL, stalled rank: non-zero exit within the timeout" eval 'failed_within && [ "${secs%.*}" -lt 40 ]'
      check "NCCL, stalled rank: rank 0 names itself, its host and the collective" grep -Eq \
        "comm-check: error: rank 0 on [^:]+: all_reduce of 1 floats did not complete in 5 s \(a rank died or diverged\)" \
        "$tmp/dev2_stall.err"
      show dev2_stall 6
    else
      echo "note: one GPU here: the -np 2 NCCL checks need two"
    fi
  fi
fi

[ "$failures" -eq 0 ] && echo "dist: all checks passed" || echo "dist: $failures check(s) failed"
[ "$failures" -eq 0 ]
