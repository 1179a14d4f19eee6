#!/usr/bin/env bash
# CPU attention benchmark: bench-attn's sweep (recipes/bench/attention_cpu.yaml: naive vs flash,
# 4 heads x 64, causal, 512..8192 tokens per row at 8192 tokens per batch, forward and backward,
# dense and varlen) beside PyTorch's naive attention on the same dense shapes (Debian's
# python3-torch 1.13: the peer the issue measured; its GEMMs on OpenBLAS with the CPU type
# forced, as scripts/bench-train.sh explains), and this machine's sgemm ceiling (bench-sgemm).
# Writes OUT_DIR/{llmlab,torch}.jsonl, OUT_DIR/attention-cpu.png, and prints the summary.
# About 6 minutes on the 2-core machine.
# Usage: scripts/bench-attn.sh [OUT_DIR] [bench-attn key=value ...]     (default build/bench-attn)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/bench-attn}"
shift || true
mkdir -p "$out"

scripts/setup.sh python3-torch python3-matplotlib libopenblas0-openmp
cmake --preset release >/dev/null
cmake --build --preset release --target bench-attn bench-sgemm >/dev/null
bin=build/release/bin
py=/usr/bin/python3  # python3-torch installs into the system interpreter
threads=2

"$bin/bench-attn" recipes/bench/attention_cpu.yaml threads=$threads "$@" --output "$out/llmlab.jsonl"
env OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
  $py scripts/bench/torch_attention.py --device cpu --threads $threads --impls naive,sdpa \
  --seq-lens 512,1024,2048,4096,8192 --head-dims 64 --heads 4 --tokens 8192 --causal true --modes fwd,bwd \
  --warmup 1 --repeats 5 >"$out/torch.jsonl"
ceiling=$("$bin/bench-sgemm" --json | $py -c 'import json,sys; print(json.load(sys.stdin)["ceiling_gflops"])')
$py scripts/plot-attn.py --out "$out/attention-cpu.png" "$out/llmlab.jsonl" "$out/torch.jsonl"
echo
echo "sgemm ceiling: $ceiling GFLOP/s ($threads threads)"
$py scripts/bench/attn_summary.py --sgemm "$ceiling" "$out/llmlab.jsonl" "$out/torch.jsonl"
