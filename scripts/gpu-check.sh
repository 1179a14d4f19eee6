#!/usr/bin/env bash
# The project's one prepared GPU check, sized for a lent H100/H200 (15 minutes of device time,
# its start included): runs the CUDA unit tests (every kernel against the CPU reference; the
# sm80-class kernels first on their own, then probes of each Hopper primitive), then
# bench-attn's CUDA sweeps (recipes/bench/attention_h200.yaml) beside PyTorch's
# scaled_dot_product_attention (flash and cuDNN backends) as the anchor, most important first:
# head dim 128 and torch on it, the backward with dQ by bulk reductions, varlen + GQA, varlen of equal documents against dense, the
# sm80-class kernels, head dim 64, the deterministic backward; then, if time is left,
# compute-sanitizer (memcheck, racecheck) over one test case. It prints a short table last.
#
# Binaries: a bundle built here by scripts/gpu-bundle.sh and carried along
# (run(carry=[".gpu-bundle"], command="scripts/gpu-check.sh $OUT", timeout_s=540)); the GPU
# machine has nvcc but not our Debian libraries, and compiling the kernels would eat the lease.
# Without a bundle (or with GPU_CHECK_BUILD=1) it builds with CUDA, which needs the
# dependencies of scripts/setup.sh.
#
# Time: every step has a limit and the whole check a budget (GPU_CHECK_BUDGET_S, default 450 s);
# a step that would start past the budget is skipped and said so. A failing step is reported
# and the rest still run, so one call gives all the evidence there is.
#
# OUT_DIR receives at most four files (a device call brings back eight): summary.txt (the step
# log and the table), attention-gpu.png, results.jsonl (every bench-attn and torch row) and
# gpu-check.tar.gz (every log, the rows by step, nvidia-smi), refreshed after every step so
# that a check cut short still returns what it measured.
# Usage: scripts/gpu-check.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/gpu-check.sh OUT_DIR}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/gpu-check.XXXXXX)         # logs and rows, packed into OUT_DIR
unpacked=$(mktemp -d /tmp/gpu-check-bundle.XXXXXX)  # the bundle's binaries, not packed
trap 'rm -rf "$work" "$unpacked"' EXIT
summary="$out/summary.txt"
: >"$summary"
t0=$(date +%s)
budget="${GPU_CHECK_BUDGET_S:-450}"

note() { echo "gpu-check [$(($(date +%s) - t0))s]: $*" | tee -a "$summary"; }
pack() {  # refreshes OUT_DIR's copies of the logs and rows
  # torch_attention.py prints other lines among its JSON rows: keep the rows only.
  cat "$work"/*.jsonl 2>/dev/null | grep '^{' >"$out/results.jsonl.tmp"; mv "$out/results.jsonl.tmp" "$out/results.jsonl"
  tar -C "$work" -czf "$out/gpu-check.tar.gz.tmp" . && mv "$out/gpu-check.tar.gz.tmp" "$out/gpu-check.tar.gz"
}
# run_limited NAME LIMIT_S ROWS COMMAND...: runs with min(LIMIT_S, what is left of the budget);
# stdout in WORK/NAME.jsonl when ROWS is 1, else with stderr in WORK/NAME.log.
run_limited() {
  local name="$1" limit="$2" rows="$3"; shift 3
  local left=$((budget - ($(date +%s) - t0)))
  if [ "$left" -lt 20 ]; then note "$name: SKIPPED (the ${budget} s budget is spent)"; return 3; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local s=$(date +%s) rc
  if [ "$rows" = 1 ]; then timeout --kill-after=10 "$limit" "$@" >"$work/$name.jsonl" 2>"$work/$name.log"
  else timeout --kill-after=10 "$limit" "$@" >"$work/$name.log" 2>&1; fi
  rc=$?
  if [ $rc -eq 0 ]; then note "$name: ok ($(($(date +%s) - s)) s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then note "$name: TIMED OUT after $limit s (see $name.log)"
  else note "$name: FAILED with exit code $rc (see $name.log: $(tail -1 "$work/$name.log" | cut -c1-160))"; fi
  pack
  return $rc
}
step() { run_limited "$1" "$2" 0 "${@:3}"; }     # NAME LIMIT_S COMMAND...
measure() { run_limited "$1" "$2" 1 "${@:3}"; }  # the same, its JSON rows (kept if cut short) apart

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv >"$work/nvidia-smi.txt" 2>&1 ||
  note "nvidia-smi failed"
note "device: $(tail -n +2 "$work/nvidia-smi.txt" | head -1)"

# --- binaries: the carried bundle, else a build here --------------------------------------
bin=""
bundle=.gpu-bundle/llmlab-gpu.tar.gz
if [ -f "$bundle" ] && [ -z "${GPU_CHECK_BUILD:-}" ]; then
  tar -C "$unpacked" -xzf "$bundle"
  root="$unpacked/llmlab-gpu"
  built_from=$(awk '$1 == "source_hash" {print $2}' "$root/manifest.txt")
  if [ "$built_from" != "$(scripts/gpu-source-hash.sh)" ]; then
    note "WARNING: the bundle was built from other sources than this tree (rebuild: scripts/gpu-bundle.sh)"
  fi
  note "bundle: $(grep -E '^(git|built)' "$root/manifest.txt" | tr '\n' ' ')"
  # The CUDA libraries the bundle leaves to this machine: the toolkit's, else a pip wheel's.
  libpath="$root/lib"
  for so in $(awk '$1 == "device_libs" {$1 = ""; print}' "$root/manifest.txt"); do
    found=$(ldconfig -p | awk -v so="$so" '$1 == so {print $NF; exit}')
    [ -n "$found" ] || found=$(find /usr/local/cuda*/lib64/ /usr/local/cuda*/lib/ /usr/local/cuda*/targets/*/lib/ \
      "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)/nvidia" \
      -name "$so" 2>/dev/null | head -1)
    if [ -n "$found" ]; then libpath="$libpath:$(dirname "$found")"; else note "WARNING: $so not found on this machine"; fi
  done
  export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if "$root/bin/bench-attn" --help >"$work/bundle-check.log" 2>&1; then
    bin="$root/bin"
  else
    note "the bundle's bench-attn does not start here ($(tail -1 "$work/bundle-check.log")); building instead"
    ldd "$root/bin/bench-attn" >>"$work/bundle-check.log" 2>&1
  fi
fi
if [ -z "$bin" ]; then
  timeout 60 scripts/setup.sh >"$work/setup.log" 2>&1 || note "setup.sh failed (no network?); building with what is installed"
  build=build/gpu
  step configure 120 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMLAB_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DLLMLAB_WERROR=OFF &&
    step build 400 cmake --build "$build" -j "$(nproc)" --target bench-attn llmlab_cuda_tests
  if [ ! -x "$build/bin/bench-attn" ]; then
    tail -20 "$work/configure.log" "$work/build.log" 2>/dev/null
    note "no binaries: stopping"
    pack
    exit 1
  fi
  bin="$build/bin"
fi
pack

# --- correctness: the sm80-class kernels alone, then with the sm90 ones -------------------
# Should the sm90 kernels fail or hang on hardware (the emulator cannot see everything), the
# sweeps still time the proven sm80-class kernels.
LLMLAB_CUDA_TESTS_KERNELS=sm80 step cuda-tests-sm80 60 "$bin/llmlab_cuda_tests"
sm80_ok=$?
# The Hopper primitives one at a time (tests/cuda/test_sm90_probes.cpp: a TMA box's bytes, each
# wgmma loop of the sm90 kernels against exact arithmetic): should an sm90 kernel fail below,
# these say which layout assumption is wrong; every failing probe's elements go to probes/.
mkdir -p "$work/probes"
LLMLAB_PROBE_DUMP_DIR="$work/probes" step cuda-probes 40 "$bin/llmlab_cuda_tests" -tc="sm90 probe*"
step cuda-tests 90 "$bin/llmlab_cuda_tests" -tce="sm90 probe*"
all_ok=$?
for log in cuda-tests-sm80 cuda-probes cuda-tests; do
  grep -E "test cases|SKIP|ERROR|FAILED|elements differ" "$work/$log.log" | head -12 | cut -c1-240 |
    sed "s/^/  $log: /" | tee -a "$summary"
done
# The machine code the kernels became (no disassembler here): HGMMA where wgmma was meant, no
# LDL/STL (local memory), read later from gpu-check.tar.gz.
if command -v cuobjdump >/dev/null; then
  step sass 30 bash -c "cuobjdump --dump-sass '$bin/bench-attn' | gzip >'$work/sass.txt.gz'"
  note "sass: $(zcat "$work/sass.txt.gz" | grep -c HGMMA) HGMMA, $(zcat "$work/sass.txt.gz" | grep -cE '\b(LDL|STL)\b') LDL/STL"
fi
flash_kernel=auto
if [ $all_ok -ne 0 ] && [ $sm80_ok -eq 0 ]; then
  flash_kernel=sm80
  note "the sm90 kernels failed their tests: the sweeps time the sm80-class kernels (flash_kernel=sm80)"
fi

# --- speed, most important first -----------------------------------------------------------
h200=recipes/bench/attention_h200.yaml
bench=("$bin/bench-attn" "$h200" repeats=10 warmup=2 flash_kernel=$flash_kernel --quiet --json)
torch=(python3 scripts/bench/torch_attention.py --device cuda --dtype bf16 --impls flash,cudnn --tokens 16384
  --warmup 2 --repeats 10 --rotate-bytes 536870912)
export PYTHONUNBUFFERED=1

measure bench-d128 150 "${bench[@]}"
measure torch-d128 120 "${torch[@]}" --seq-lens 512,1024,2048,4096,8192,16384 --head-dims 128 \
  --heads 16 --causal false,true --modes fwd,bwd,fwd_bwd
# The sm90 backward's dQ by bulk reductions (FlashAttention-3's way) against its atomics above:
# the default follows whichever is faster.
[ "$flash_kernel" = auto ] && measure bench-bulk-dq 60 "${bench[@]}" impl=flash mode=bwd dq_reduction=bulk
# Packed documents (lognormal lengths) beside dense rows, and GQA 16/4 (Llama-style).
measure bench-varlen 50 "${bench[@]}" impl=flash seq_lens=4096,16384 layout=dense,varlen \
  kv_heads=4 causal=true mode=fwd,bwd
# Varlen of 4 equal documents a row against the dense rows of their length in bench-d128 (the
# goal: within 5%; the summary prints the ratios).
measure bench-varlen-equal 40 "${bench[@]}" impl=flash seq_lens=4096,16384 \
  layout=varlen doc_lengths=equal mode=fwd,bwd
# The sm80-class kernels (milestone 1) beside the sm90 ones the sweeps above ran (milestone 2).
[ "$flash_kernel" = auto ] && measure bench-sm80 50 "${bench[@]}" impl=flash \
  seq_lens=1024,4096,16384 mode=fwd,bwd flash_kernel=sm80
measure bench-d64 50 "${bench[@]}" head_dim=64 heads=32 seq_lens=1024,4096,16384 mode=fwd,bwd
measure torch-d64 50 "${torch[@]}" --seq-lens 1024,4096,16384 --head-dims 64 --heads 32 \
  --causal false,true --modes fwd,bwd
# The deterministic backward (dq without atomics: more recompute) against the default one above.
measure bench-det 40 "${bench[@]}" impl=flash seq_lens=4096,16384 mode=bwd deterministic=true

# --- last, if time is left: compute-sanitizer over one test case's kernels (all families,
# D = 64, causal and not, GQA): out-of-bounds or misaligned accesses, shared-memory races ------
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    step sanitize-$tool 60 "$sanitizer" --tool "$tool" --error-exitcode 1 "$bin/llmlab_cuda_tests" \
      -tc="cuda attention bf16 D=64*"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$work/sanitize-$tool.log" | head -2 | sed "s/^/  sanitize-$tool: /" |
      tee -a "$summary"
  done
else
  note "compute-sanitizer not found: no sanitizer steps"
fi

# --- the figure and the table --------------------------------------------------------------
pack
python3 scripts/plot-attn.py --out "$out/attention-gpu.png" "$out/results.jsonl" >"$work/plot.log" 2>&1 ||
  note "plot skipped: $(tail -1 "$work/plot.log")"
note "done in $(($(date +%s) - t0)) s"
echo
python3 scripts/bench/attn_summary.py "$out/results.jsonl" | tee -a "$summary"
pack
