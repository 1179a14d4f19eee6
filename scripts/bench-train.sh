#!/usr/bin/env bash
# Training throughput, fp32 on the CPU with 2 threads: llmlab `train` against PyTorch
# (scripts/bench/torch_train.py, the same model math) on the same shapes: GPT-2 124M at B=4
# with T=64, 256 and 1024, and tiny-llama (recipes/models/tiny-llama.yaml) at B=8, T=512.
# Prints tokens/s of both, their ratio, and MFU against this machine's sgemm ceiling
# (bench-sgemm); writes OUT_DIR/train-bench.json. About 12 minutes on the 2-core machine.
# Usage: scripts/bench-train.sh [OUT_DIR]      (default build/bench-train)
#
# The llmlab interface this script uses:
#   pack-data /dev/null "data.inputs=[F1,F2,...]" data.format=text 'data.text_delimiter="\n%\n"'
#             data.tokenizer=byte data.packing_length=T data.output=DIR --quiet
#   train RECIPE data.packing_length=T train.micro_batch_size=B train.gradient_accumulation_steps=1
#         data.shards=DIR train.steps=N train.threads=2 output.checkpoints=false --json
#     stdout: one JSON object per step {"step","loss","lr","tokens_per_second","grad_norm","mfu"},
#     then {"summary": {"tokens_per_second": ..., "mfu": ...,
#                       "memory": {"measured_peak_bytes": ..., "planned_peak_bytes": ...}}}
#   bench-sgemm --json
#     stdout: one JSON object with "ceiling_gflops" (the fp32 GEMM rate train's matmuls can reach)
#
# Fairness: both sides run 2 threads, 2 untimed warm-up steps, then report the median step;
# a step is forward + backward + clip at global norm 1 + AdamW. PyTorch (Debian's python3-torch
# 1.13) does its GEMMs in OpenBLAS (libblas.so.3 is otherwise the reference BLAS, tens of times
# slower; its OpenMP build timed 49 tokens/s against 38 for the pthread one at GPT-2 T=64) with
# OPENBLAS_CORETYPE=SkylakeX: Debian's OpenBLAS 0.3.21 does not recognise this CPU and falls
# back to slower kernels.
# FLOPs (torch_train.py computes them, used for both MFUs): per token 6*N + 6*L*T*C, N the
# parameters that multiply activations (all but wpe / an untied embed_tokens), 6*L*T*C causal
# attention (QK^T and PV: 4*T*C forward per layer, x3 for fwd+bwd, halved for causality).
# llmlab trains on packed fortunes (documents of a few hundred bytes, block-diagonal attention)
# and PyTorch on full-length rows, so llmlab computes less attention than the count credits it
# with: at most the attention share of the FLOPs, 0.5% at T=64, 2% at 256, 7% at 1024 for
# GPT-2 and 15% for tiny-llama at 512.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/bench-train}"
mkdir -p "$out"

scripts/setup.sh python3-torch fortunes libopenblas0-openmp
cmake --preset release >/dev/null
cmake --build --preset release --target train bench-sgemm pack-data >/dev/null
bin=build/release/bin
py=/usr/bin/python3  # python3-torch installs into the system interpreter
export OMP_NUM_THREADS=2
torch_env=(env OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp)

fortunes=$(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort | paste -sd, -)
ceiling=$("$bin/bench-sgemm" --json | $py -c 'import json,sys; print(json.load(sys.stdin)["ceiling_gflops"])')

# torch_train.py arguments from a model preset (flat "key: value" lines under model:).
model_args() {
  $py - "$1" <<'PY'
import re, sys
m = dict(re.findall(r"^\s+(\w+):\s*([^\s#]+)", open(sys.argv[1]).read(), re.M))
args = ["--arch", m["arch"], "--vocab", m["vocab_size"], "--hidden", m["hidden_size"],
        "--layers", m["num_layers"], "--heads", m["num_heads"],
        "--kv-heads", m.get("num_kv_heads", m["num_heads"]),
        "--intermediate", m["intermediate_size"], "--positions", m["max_position_embeddings"],
        "--rope-theta", m.get("rope_theta", "10000")]
print(" ".join(args))
PY
}

# name  recipe  model preset  B  T  timed steps (T=1024 steps take ~20 s on each side)
shapes=(
  "gpt2-124m recipes/gpt2/124m_pretrain_cpu.yaml recipes/models/gpt2-124m.yaml 4 64 10"
  "gpt2-124m recipes/gpt2/124m_pretrain_cpu.yaml recipes/models/gpt2-124m.yaml 4 256 8"
  "gpt2-124m recipes/gpt2/124m_pretrain_cpu.yaml recipes/models/gpt2-124m.yaml 4 1024 4"
  "tiny-llama recipes/tiny/llama_pretrain_cpu.yaml recipes/models/tiny-llama.yaml 8 512 20"
)
warmup=2
results="$out/train-bench.jsonl"
: > "$results"
for shape in "${shapes[@]}"; do
  read -r name recipe preset B T steps <<<"$shape"
  shards="$out/fortunes-$T"
  [ -d "$shards" ] || "$bin/pack-data" /dev/null "data.inputs=[$fortunes]" data.format=text \
    'data.text_delimiter="\n%\n"' data.tokenizer=byte data.packing_length="$T" data.overflow=truncate \
    data.output="$shards" --quiet
  echo "bench-train: $name B=$B T=$T: llmlab ($((warmup + steps)) steps)" >&2
  rm -rf "$out/run-$name-$T"
  "$bin/train" "$recipe" data.packing_length="$T" train.micro_batch_size="$B" \
    train.gradient_accumulation_steps=1 data.shards="$shards" train.steps=$((warmup + steps)) \
    train.threads=2 output.dir="$out/run-$name-$T" output.checkpoints=false --json > "$out/llmlab-$name-$T.jsonl"
  echo "bench-train: $name B=$B T=$T: torch ($((warmup + steps)) steps)" >&2
  # shellcheck disable=SC2046  # model_args is a list of words
  "${torch_env[@]}" $py scripts/bench/torch_train.py $(model_args "$preset") --batch "$B" \
    --seq "$T" --steps "$steps" --warmup "$warmup" --threads 2 > "$out/torch-$name-$T.json"
  $py - "$name" "$B" "$T" "$out/llmlab-$name-$T.jsonl" "$out/torch-$name-$T.json" "$ceiling" \
    >> "$results" <<'PY'
import json, sys
name, B, T, llmlab_path, torch_path, ceiling = sys.argv[1:]
lines = [json.loads(l) for l in open(llmlab_path) if l.strip().startswith("{")]
summary = next(l["summary"] for l in lines if "summary" in l)
# The same statistic as torch_train.py: the median step after the 2 warm-up steps.
timed = sorted(l["tokens_per_second"] for l in lines if "step" in l and l["step"] > 2)
summary["tokens_per_second"] = (timed[len(timed) // 2] if len(timed) % 2 else
                                0.5 * (timed[len(timed) // 2 - 1] + timed[len(timed) // 2]))
t = json.load(open(torch_path))
peak = float(ceiling) * 1e9
fpt = t["flops_per_token"]  # the same shape and convention on both sides
print(json.dumps({
    "model": name, "batch": int(B), "seq": int(T), "flops_per_token": fpt,
    "llmlab": {"tokens_per_second": summary["tokens_per_second"],
               "mfu": summary["tokens_per_second"] * fpt / peak,
               "mfu_reported": summary.get("mfu"), "memory": summary.get("memory"),
               "steps": [l for l in lines if "step" in l]},
    "torch": dict(t, mfu=t["tokens_per_second"] * fpt / peak),
    "ratio": summary["tokens_per_second"] / t["tokens_per_second"],
}))
PY
done

$py - "$results" "$out/train-bench.json" "$ceiling" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ceiling = float(sys.argv[3])
json.dump({"benchmark": "train", "threads": 2, "precision": "fp32", "ceiling_gflops": ceiling,
           "flops_per_token": "6*N + 6*L*T*C; N = parameters that multiply activations",
           "results": rows}, open(sys.argv[2], "w"), indent=1)
print(f"fp32, 2 threads; MFU against the sgemm ceiling of {ceiling:.0f} GFLOP/s")
print("%-24s %14s %14s %7s %12s %11s" % ("shape", "llmlab tok/s", "torch tok/s", "ratio",
                                         "llmlab MFU", "torch MFU"))
for r in rows:
    shape = f"{r['model']} B={r['batch']} T={r['seq']}"
    print("%-24s %14.1f %14.1f %6.2fx %11.1f%% %10.1f%%" % (
        shape, r["llmlab"]["tokens_per_second"], r["torch"]["tokens_per_second"], r["ratio"],
        100 * r["llmlab"]["mfu"], 100 * r["torch"]["mfu"]))
print(f"written {sys.argv[2]}")
PY
