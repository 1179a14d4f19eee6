#!/usr/bin/env bash
# Checkpointing policies measured: for three model shapes and every policy, train's measured
# peak memory (tracked allocator) against the plan memory-plan prints, and the median step
# time: the memory/time trade-off table users choose a policy from.
# Shapes (fp32, CPU, 2 threads, byte-level fortunes rows):
#   tiny-llama  B=8  T=512    (recipes/tiny/llama_pretrain_cpu.yaml)
#   tiny-gpt2   B=8  T=512    (recipes/tiny/gpt2_pretrain_cpu.yaml)
#   gpt2-124m   B=4  T=256    (recipes/gpt2/124m_pretrain_cpu.yaml)
# Usage: scripts/bench-checkpointing.sh [OUT_DIR]    (default build/bench-checkpointing)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/bench-checkpointing}"
mkdir -p "$out"
scripts/setup.sh fortunes
cmake --preset release >/dev/null
cmake --build --preset release --target train pack-data >/dev/null
bin=build/release/bin
fortunes=$(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort | paste -sd, -)

policies=("none" "selective checkpointing.selective=core" "selective checkpointing.selective=pointwise"
          "every_k checkpointing.every_k=2" "sqrt" "full" "budget checkpointing.budget=64MiB")
# name  recipe  B  T  steps  [attention]
shapes=(
  "tiny-llama recipes/tiny/llama_pretrain_cpu.yaml 8 512 6 flash"
  "tiny-llama-naive recipes/tiny/llama_pretrain_cpu.yaml 8 512 4 naive"
  "tiny-gpt2 recipes/tiny/gpt2_pretrain_cpu.yaml 8 512 6 flash"
  "gpt2-124m recipes/gpt2/124m_pretrain_cpu.yaml 4 256 4 flash"
)
results="$out/checkpointing.jsonl"
: > "$results"
for shape in "${shapes[@]}"; do
  read -r name recipe B T steps attention <<<"$shape"
  shards="$out/fortunes-$T"
  [ -d "$shards" ] || "$bin/pack-data" /dev/null "data.inputs=[$fortunes]" data.format=text \
    'data.text_delimiter="\n%\n"' data.tokenizer=byte data.packing_length="$T" data.overflow=truncate \
    data.output="$shards" --quiet >/dev/null
  for policy in "${policies[@]}"; do
    echo "bench-checkpointing: $name $policy" >&2
    rm -rf "$out/run"
    # shellcheck disable=SC2086  # policy holds the policy name and its own key=value words
    "$bin/train" "$recipe" checkpointing.policy=$policy data.packing_length="$T" \
      train.micro_batch_size="$B" train.gradient_accumulation_steps=1 train.attention="$attention" data.shards="$shards" train.steps="$steps" \
      train.threads=2 output.dir="$out/run" output.checkpoints=false --json |
      python3 -c 'import json,sys
lines=[json.loads(l) for l in sys.stdin]
s=next(l["summary"] for l in lines if "summary" in l)
steps=sorted(l["step_seconds"] for l in lines if "step" in l and l["step"] > 1)
print(json.dumps({"shape": sys.argv[1], "policy": sys.argv[2], "step_seconds": steps[len(steps)//2],
                  "measured": s["memory"]["measured_peak_bytes"], "planned": s["memory"]["planned_peak_bytes"],
                  "activations_measured": s["memory"]["categories"].get("activations", {}).get("measured", 0)}))' \
      "$name" "$policy" >> "$results"
  done
done
python3 - "$results" "$out/checkpointing.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
print("%-18s %-28s %12s %12s %8s %10s %9s" % ("shape", "policy", "measured", "planned", "diff", "step (s)", "vs none"))
base = {}
for r in rows:
    if r["policy"] == "none": base[r["shape"]] = r["step_seconds"]
    mib = lambda b: f"{b / 2**20:.1f} MiB"
    diff = 100 * (r["measured"] - r["planned"]) / r["planned"]
    print("%-18s %-28s %12s %12s %+7.2f%% %10.3f %8.2fx" % (r["shape"], r["policy"].replace("checkpointing.", ""),
          mib(r["measured"]), mib(r["planned"]), diff, r["step_seconds"], r["step_seconds"] / base[r["shape"]]))
PY
