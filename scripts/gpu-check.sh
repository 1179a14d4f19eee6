#!/usr/bin/env bash
# The project's one prepared GPU check (an H100/H200 with nvcc, about 8 minutes): builds with
# CUDA, runs the CUDA unit tests (every kernel against the CPU reference), bench-attn's CUDA
# sweep (recipes/bench/attention_h200.yaml, shortened) with head dims 128 and 64 (the sm90
# forward), a varlen run, the sm80-class forward and the deterministic backward, PyTorch's scaled_dot_product_attention (flash and cuDNN backends) on the same shapes as
# the anchor, and prints a short table last. Every step has a time limit and a log; a failing
# step is reported and the rest still run, so one call gives all the evidence there is.
# Writes OUT_DIR/{summary.txt, *.log, llmlab*.jsonl, torch.jsonl, attention-gpu.png}.
# Usage: scripts/gpu-check.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/gpu-check.sh OUT_DIR}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
t0=$(date +%s)
note() { echo "gpu-check [$(($(date +%s) - t0))s]: $*" | tee -a "$summary"; }
step() {  # NAME LIMIT_S COMMAND...: runs with a time limit, output in OUT_DIR/NAME.log
  local name="$1" limit="$2"; shift 2
  local s=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then note "$name: ok ($(($(date +%s) - s)) s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then note "$name: TIMED OUT after $limit s (see $name.log)"
  else note "$name: FAILED with exit code $rc (see $name.log)"; fi
  return $rc
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv >"$out/nvidia-smi.txt" 2>&1 ||
  note "nvidia-smi failed"
note "device: $(tail -n +2 "$out/nvidia-smi.txt" | head -1)"
scripts/setup.sh >"$out/setup.log" 2>&1 || note "setup.sh failed (no network?); building with what is installed"

build=build/gpu
step configure 120 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMLAB_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a -DLLMLAB_WERROR=OFF &&
  step build 300 cmake --build "$build" -j "$(nproc)" --target bench-attn llmlab_cuda_tests
if [ ! -x "$build/bin/bench-attn" ]; then
  tail -40 "$out/build.log" "$out/configure.log" 2>/dev/null
  note "no binaries: stopping"
  exit 1
fi
bin="$build/bin"

step cuda-tests 150 "$bin/llmlab_cuda_tests"
grep -E "test cases|assertions|SKIP|ERROR" "$out/cuda-tests.log" | head -20 | sed 's/^/  /' | tee -a "$summary"

h200=recipes/bench/attention_h200.yaml
step bench-d128 200 "$bin/bench-attn" "$h200" repeats=10 warmup=2 --quiet --output "$out/llmlab-d128.jsonl"
step bench-d64 80 "$bin/bench-attn" "$h200" head_dim=64 heads=32 seq_lens=1024,4096,16384 mode=fwd,bwd \
  repeats=10 warmup=2 --quiet --output "$out/llmlab-d64.jsonl"
# Packed documents (lognormal lengths) beside dense rows, and GQA 16/4 (Llama-style).
step bench-varlen 60 "$bin/bench-attn" "$h200" seq_lens=4096,16384 layout=dense,varlen kv_heads=4 causal=true \
  mode=fwd,bwd repeats=10 warmup=2 --quiet --output "$out/llmlab-varlen.jsonl"

# The sm80-class kernels (milestone 1) beside the sm90 ones the sweeps above ran (milestone 2).
step bench-sm80 80 "$bin/bench-attn" "$h200" impl=flash seq_lens=1024,4096,16384 mode=fwd,bwd flash_kernel=sm80 \
  repeats=10 warmup=2 --quiet --output "$out/llmlab-sm80.jsonl"

# The deterministic backward (dq without atomics: more recompute) against the default one above.
step bench-det 60 "$bin/bench-attn" "$h200" impl=flash seq_lens=4096,16384 mode=bwd deterministic=true \
  repeats=10 warmup=2 --quiet --output "$out/llmlab-det.jsonl"

step torch 200 python3 scripts/bench/torch_attention.py --device cuda --dtype bf16 --impls flash,cudnn \
  --seq-lens 512,1024,2048,4096,8192,16384 --head-dims 128 --heads 16 --tokens 16384 --causal false,true \
  --modes fwd,bwd,fwd_bwd --warmup 2 --repeats 10 --rotate-bytes 536870912
grep '^{' "$out/torch.log" >"$out/torch.jsonl" 2>/dev/null
step torch-d64 80 python3 scripts/bench/torch_attention.py --device cuda --dtype bf16 --impls flash,cudnn \
  --seq-lens 1024,4096,16384 --head-dims 64 --heads 32 --tokens 16384 --causal false,true --modes fwd,bwd \
  --warmup 2 --repeats 10 --rotate-bytes 536870912
grep '^{' "$out/torch-d64.log" >>"$out/torch.jsonl" 2>/dev/null

python3 scripts/plot-attn.py --out "$out/attention-gpu.png" "$out"/llmlab-*.jsonl "$out/torch.jsonl" \
  >"$out/plot.log" 2>&1 || note "plot skipped (no matplotlib?)"
note "done in $(($(date +%s) - t0)) s"
echo
python3 scripts/bench/attn_summary.py "$out"/llmlab-d128.jsonl "$out"/llmlab-d64.jsonl "$out"/llmlab-varlen.jsonl \
  "$out"/llmlab-det.jsonl "$out"/llmlab-sm80.jsonl \
  "$out/torch.jsonl" | tee -a "$summary"
