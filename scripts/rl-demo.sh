#!/usr/bin/env bash
# The rl-train demonstration (Kimi k1.5 on two CPU cores), reported in the README:
#   1. a weak starting policy: `rl-train tasks --sft` writes worked running-sum solutions, 60%
#      of them with one wrong step (task.solution_noise: data with mistakes, as real SFT data
#      has), pack-data packs them, train fits them (recipes/tiny/running_sum_*_cpu.yaml): the
#      policy makes the mistakes it was shown, at temperature 1 about 0.3 of its answers are right;
#   2. RL from it: the k1.5 loss (and plain policy gradient) with uniform, prioritised and
#      curriculum sampling, partial rollouts at 24 of the 64 response tokens per iteration, the
#      length penalty; and, from a second start SFT-trained on mixed worked/answer-only
#      solutions, k1.5 choosing between them;
#   3. every final policy and the starts evaluated on 1,280 samples of held-out problems
#      (task.seed=99, temperature 1, optim.lr=0), plots (scripts/plot-rl.py) and a table, plus
#      the rollout throughput with the KV cache against recomputation.
# Everything lands in OUT_DIR (default out/rl-demo): metrics, checkpoints, PNGs, summary.md.
# Usage: scripts/rl-demo.sh [OUT_DIR]   (ITERATIONS=N per RL run, default 300; SFT_STEPS=N, default 400)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/rl-demo}"
mkdir -p "$out"
bin="${LLMLAB_BIN:-build/release/bin}"  # LLMLAB_BIN=DIR: binaries built elsewhere
if [ -z "${LLMLAB_BIN:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target train pack-data rl-train >/dev/null
fi
# Debian's python3-matplotlib (another python3 first on the PATH may lack it).
py=python3
$py -c "import matplotlib" 2>/dev/null || py=/usr/bin/python3
$py -c "import matplotlib" 2>/dev/null || { scripts/setup.sh python3-matplotlib; py=/usr/bin/python3; }
iterations="${ITERATIONS:-300}"
sft_steps="${SFT_STEPS:-400}"
rl=recipes/tiny/running_sum_rl_cpu.yaml
task=(task.max_difficulty=4)

# 1. Weak starting policies, one per SFT style.
for style in cot mixed; do
  if [ ! -f "$out/sft-$style/done" ]; then
    "$bin/rl-train" tasks "$rl" "${task[@]}" --sft --out "$out/sft-$style.jsonl" task.seed=2 task.count=20000 task.style=$style \
      task.solution_noise=0.6
    rm -rf "$out/packed-$style" "$out/sft-$style"
    "$bin/pack-data" recipes/tiny/running_sum_pack_cpu.yaml "${task[@]}" "data.inputs=[$out/sft-$style.jsonl]" \
      data.output="$out/packed-$style" --quiet >/dev/null
    "$bin/train" recipes/tiny/running_sum_sft_cpu.yaml "${task[@]}" "data.shards=[$out/packed-$style]" \
      train.steps="$sft_steps" output.dir="$out/sft-$style" --quiet >"$out/sft-$style.log"
    touch "$out/sft-$style/done"
  fi
done
policy() { echo "$out/sft-$1/checkpoints/step_$(printf %08d "$sft_steps")"; }

# 2. RL runs (each skipped when its metrics are complete).
run() {  # NAME START_STYLE OVERRIDES...
  local name="$1" style="$2"; shift 2
  [ -f "$out/$name/done" ] && return
  rm -rf "$out/$name"
  echo "rl-demo: $name"
  "$bin/rl-train" "$rl" "${task[@]}" train.steps="$iterations" output.dir="$out/$name" output.save_every=0 \
    --init-from "$(policy "$style")" --quiet "$@" >"$out/$name.log"
  touch "$out/$name/done"
}
run k15 cot
run pg cot algorithm.loss=pg algorithm.gradient_steps=1
run prioritized cot sampling.strategy=prioritized
run curriculum cot sampling.strategy=curriculum sampling.curriculum_iterations=$((iterations / 2))
run partial cot partial_rollout.enabled=true partial_rollout.segment_length=24
run long mixed
run short cot length_penalty.enabled=true length_penalty.weight=0.5 length_penalty.warmup_iterations=$((iterations / 6))

# 3. Held-out evaluation: the same 80 problems x 16 samples for every policy.
evaluate() {  # NAME POLICY
  [ -f "$out/eval-$1.jsonl" ] && return
  "$bin/rl-train" "$rl" "${task[@]}" task.seed=99 optim.lr=0 train.steps=10 data.train_batch_size=8 rollout.n=16 \
    output.dir="$out/eval-$1" output.checkpoints=false --init-from "$2" --json --quiet >"$out/eval-$1.tmp"
  mv "$out/eval-$1.tmp" "$out/eval-$1.jsonl"
}
final() { echo "$out/$1/checkpoints/step_$(printf %08d "$iterations")"; }
evaluate start-cot "$(policy cot)"
evaluate start-mixed "$(policy mixed)"
for name in k15 pg prioritized curriculum partial long short; do evaluate "$name" "$(final "$name")"; done

# 4. Figures, table, rollout throughput.
m() { echo "$1=$out/$2/metrics.jsonl"; }
$py scripts/plot-rl.py --out "$out/k15.png" --title "k1.5 and policy gradient from a noisy SFT start (running sums, 0.8M-parameter Llama)" \
  "$(m k1.5 k15)" "$(m pg pg)"
$py scripts/plot-rl.py --out "$out/length-penalty.png" --title "length penalty (weight 0.5 after 50 iterations)" \
  "$(m 'no penalty' k15)" "$(m 'length penalty' short)"
$py scripts/plot-rl.py --out "$out/mixed-start.png" --title "start: SFT on mixed worked / answer-only solutions" \
  "$(m k1.5 long)"
$py scripts/plot-rl.py --out "$out/sampling.png" --title "problem sampling" \
  "$(m uniform k15)" "$(m prioritized prioritized)" "$(m curriculum curriculum)"
$py scripts/plot-rl.py --out "$out/partial.png" --title "partial rollouts (24 of 64 tokens per iteration) vs full" \
  "$(m full k15)" "$(m partial partial)"
"$bin/rl-train" bench-rollout "$rl" "${task[@]}" train.threads=1 --init-from "$(policy cot)" --repeats 3 --json >"$out/bench-rollout.json"
python3 - "$out" "$iterations" <<'EOF'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
def rows(name):
    return [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if '"iteration"' in l]
def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")
w = max(10, n // 10)
def held_out(name):
    r = [json.loads(l) for l in open(f"{out}/eval-{name}.jsonl") if '"iteration"' in l]
    return mean([o["accuracy"] for o in r]), mean([o["correct_length_mean"] for o in r]), mean([o["response_length_mean"] for o in r])
lines = ["| policy | held-out accuracy | held-out length (correct / all) | training accuracy, first -> last %d it. | s/iteration |" % w,
         "|---|---|---|---|---|"]
for name in ["start-cot", "k15", "pg", "prioritized", "curriculum", "partial", "short", "start-mixed", "long"]:
    acc, clen, alen = held_out(name)
    if name.startswith("start"):
        lines.append("| %s (SFT) | %.3f | %.1f / %.1f | | |" % (name, acc, clen, alen))
        continue
    r = rows(name)
    a, b = r[:w], r[-w:]
    lines.append("| %s | %.3f | %.1f / %.1f | %.3f -> %.3f | %.2f |" % (
        name, acc, clen, alen, mean([o["accuracy"] for o in a]), mean([o["accuracy"] for o in b]),
        mean([o["iteration_seconds"] for o in r])))
bench = json.load(open(f"{out}/bench-rollout.json"))
lines.append("")
lines.append("rollout throughput (%d sequences, %d new tokens): KV cache %.0f tokens/s, recompute %.0f tokens/s: %.1fx (identical responses: %.0f%%)" % (
    bench["sequences"], bench["new_tokens"], bench["cached_tokens_per_second"], bench["recompute_tokens_per_second"],
    bench["speedup"], 100 * bench["same_sequences"]))
text = "\n".join(lines) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
EOF
