#!/usr/bin/env bash
# ZeRO measured: for stages 0-3 at 1, 2 and 4 processes (mpirun on this machine), the bytes
# each rank receives per step against the ZeRO paper's volumes (2 Psi for stages 0-2, 3 Psi
# for stage 3, times (N-1)/N for ring-equivalent collectives, Psi in fp32 bytes), the median
# step time, and each rank's measured peak memory against memory-plan's.
# Weak scaling: every rank trains one micro-batch of B x T per step (gradient accumulation 1,
# so the volumes compare directly with the paper's per-step figures).
# Model: a GPT-2 shape whose layers dominate (8 x 256 wide, byte vocabulary): 6.4 M parameters.
# Usage: scripts/bench-zero.sh [OUT_DIR]    (default build/bench-zero; STEPS=N steps per run)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/bench-zero}"
mkdir -p "$out"
bin="${LLMLAB_BIN:-build/release/bin}"  # LLMLAB_BIN=DIR: binaries built elsewhere
if [ -z "${LLMLAB_BIN:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target train pack-data memory-plan >/dev/null
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)

T=128
B=4
shards="$out/packed-$T"
# Truncated, not split: GPT-2's learned positions stop at max_position_embeddings.
[ -d "$shards" ] || "$bin/pack-data" recipes/tiny/pack_cpu.yaml data.packing_length=$T data.overflow=truncate \
  data.output="$shards" --quiet >/dev/null
recipe=recipes/tiny/gpt2_pretrain_cpu.yaml
model=(model.hidden_size=256 model.num_layers=8 model.num_heads=8 model.num_kv_heads=8 model.head_dim=32
       model.intermediate_size=1024 data.packing_length=$T train.micro_batch_size=$B train.gradient_accumulation_steps=1
       "data.shards=[$shards]" train.steps="${STEPS:-6}" output.checkpoints=false zero.bucket_elements=262144)
results="$out/zero.jsonl"
: > "$results"
for np in 1 2 4; do
  threads=$(( np == 1 ? 2 : 1 ))
  for stage in 0 1 2 3; do
    echo "bench-zero: $np process(es), stage $stage" >&2
    rm -rf "$out/run"
    launch=("$bin/train")
    [ "$np" -gt 1 ] && launch=("${mpi[@]}" -np "$np" "$bin/train")
    "${launch[@]}" "$recipe" "${model[@]}" zero.stage=$stage train.threads=$threads output.dir="$out/run" --json \
      > "$out/train.json"
    "$bin/memory-plan" "$recipe" "${model[@]}" zero.stage=$stage train.threads=$threads dist.world_size=$np --json \
      > "$out/plan.json"
    python3 - "$out/train.json" "$out/plan.json" "$np" "$stage" >> "$results" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
s = next(l["summary"] for l in lines if "summary" in l)
p = json.load(open(sys.argv[2]))["per_rank"]
steps = sorted(l["step_seconds"] for l in lines if "step" in l and l["step"] > 1)
comm = sorted(l.get("comm_bytes", 0) for l in lines if "step" in l and l["step"] > 1)
cats = s["memory"]["categories"]
states = sum(cats.get(c, {}).get("measured", 0) for c in ("params", "grads", "optimizer"))
print(json.dumps({"np": int(sys.argv[3]), "stage": int(sys.argv[4]), "parameters": s["parameters"],
                  "step_seconds": steps[len(steps) // 2], "comm_bytes": comm[len(comm) // 2],
                  "loss": s["loss"], "per_rank_measured": s["memory"]["per_rank_measured_peak_bytes"],
                  "planned": s["memory"]["planned_peak_bytes"], "memory_plan": p["peak_bytes"],
                  "model_states": states, "comm_buffers": cats.get("comm", {}).get("measured", 0)}))
PY
  done
done
python3 - "$results" "$out/zero.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
MiB = 2**20
print("%3s %5s %10s %9s %9s %8s %11s %11s %11s %7s %10s" % ("np", "stage", "step (s)", "recv MiB", "x Psi", "theory",
      "states MiB", "peak MiB", "plan MiB", "diff", "loss"))
for r in rows:
    n, psi = r["np"], 4.0 * r["parameters"]
    ring = (n - 1) / n if n > 1 else 0
    x = r["comm_bytes"] / (psi * ring) if ring else 0
    theory = 0 if n == 1 else (3 if r["stage"] == 3 else 2)
    peak = max(r["per_rank_measured"])
    print("%3d %5d %10.3f %9.2f %9.2f %8s %11.2f %11.2f %11.2f %+6.2f%% %10.6f" % (
        n, r["stage"], r["step_seconds"], r["comm_bytes"] / MiB, x, theory or "-", r["model_states"] / MiB,
        peak / MiB, r["memory_plan"] / MiB, 100.0 * (peak - r["memory_plan"]) / r["memory_plan"], r["loss"]))
print("recv: bytes each rank received per step (median); x Psi: that over (N-1)/N x 4 bytes x parameters;")
print("theory: the ZeRO paper's per-step volume (2 Psi stages 0-2, 3 Psi stage 3); diff: measured peak vs memory-plan.")
PY
