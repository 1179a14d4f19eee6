#!/usr/bin/env bash
# End-to-end test of rl-train on the built-in running-sum task with a small Llama: a weak
# policy is SFT-trained by train on `rl-train tasks --sft` data, then RL raises its reward
# from a fixed seed; --json gives one object per iteration and a summary; a run stopped and
# resumed repeats the uninterrupted one; partial rollouts train; merge and sft-set write what
# they promise; bad input ends with one error line and exit code 2.
# Usage: bash rl_train.sh BIN_DIR SOURCE_DIR
set -u
bin="$1"
src="$2"
# shellcheck source=support/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/harness.sh"
tool="$bin/rl-train"
field() {  # NAME KEY: the KEY of every iteration object, one per line
  python3 -c 'import json,sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if "iteration" in o: print(repr(o[sys.argv[2]]))' "$tmp/$1.out" "$2"
}

rl="$src/recipes/tiny/running_sum_rl_cpu.yaml"
small=(model.hidden_size=64 model.num_layers=2 model.num_heads=4 model.num_kv_heads=2 model.intermediate_size=172
       task.min_difficulty=2 task.max_difficulty=3 data.max_response_length=24 data.packing_length=48
       data.max_prompt_length=16 train.threads=2)

# A weak start: SFT on worked solutions of which 60% hold a wrong step; the policy repeats
# such mistakes (accuracy about 0.33 sampled at temperature 1), which RL can train away.
run tasks tasks "$rl" "${small[@]}" --sft --out "$tmp/sft.jsonl" task.seed=2 task.count=8000 task.style=cot \
  task.solution_noise=0.6 --json
check "rl-train tasks writes SFT records" test "$rc" -eq 0 -a "$(wc -l <"$tmp/sft.jsonl")" -eq 8000
check "SFT records are prompt/completion pairs" \
  python3 -c 'import json,sys; o=json.loads(open(sys.argv[1]).readline()); sys.exit(0 if set(o)=={"prompt","completion"} and "#" in o["completion"] else 1)' "$tmp/sft.jsonl"
"$bin/pack-data" "$rl" "${small[@]}" "data.inputs=[$tmp/sft.jsonl]" data.output="$tmp/packed" data.overflow=truncate --quiet >/dev/null ||
  { echo "FAIL: packing the SFT records"; exit 1; }
# Under sanitizers (LLMLAB_SANITIZED_BUILD, set by the asan test preset) the code paths are the
# same but 10-40x slower: a short SFT and no learning comparison, which the optimised build checks.
sanitized="${LLMLAB_SANITIZED_BUILD:-0}"
sft_steps=500
[ "$sanitized" = 1 ] && sft_steps=30
"$bin/train" "$rl" "${small[@]}" "data.shards=[$tmp/packed]" train.steps=$sft_steps train.micro_batch_size=16 optim.lr=3e-3 \
  optim.schedule=cosine optim.warmup_steps=10 output.dir="$tmp/sft" output.save_every=0 --quiet >/dev/null ||
  { echo "FAIL: SFT training"; exit 1; }
policy="$tmp/sft/checkpoints/step_$(printf %08d $sft_steps)"

# RL against the same policy frozen (optim.lr=0): the same problems and sampling seeds, so the
# difference in reward is what the updates learned. Seen: 0.43 against 0.34 over iterations 21-40.
rlrun=("$rl" "${small[@]}" data.train_batch_size=16 rollout.n=8 optim.lr=1e-4 optim.beta2=0.999 optim.warmup_steps=0
       algorithm.gradient_steps=1)
if [ "$sanitized" = 1 ]; then
  echo "SKIP-PART: sanitized build: the reward comparison with a frozen policy is checked by the optimised build"
else
run learn "${rlrun[@]}" train.steps=40 output.dir="$tmp/learn" output.checkpoints=false --init-from "$policy" --json
run frozen "${rlrun[@]}" train.steps=40 optim.lr=0 output.dir="$tmp/frozen" output.checkpoints=false --init-from "$policy" --json
check "the reward rises: iterations 21-40 beat the frozen policy on the same draws by 0.05" \
  python3 -c 'import sys; a=[float(x) for x in open(sys.argv[1])]; b=[float(x) for x in open(sys.argv[2])]
print("learned %.3f frozen %.3f" % (sum(a[20:])/20, sum(b[20:])/20), file=sys.stderr)
sys.exit(0 if len(a) == len(b) == 40 and sum(a[20:])/20 - sum(b[20:])/20 > 0.05 else 1)' <(field learn reward_mean) <(field frozen reward_mean)
fi

rlrun+=(train.steps=8)
run a "${rlrun[@]}" output.dir="$tmp/a" --init-from "$policy" --json
check "rl-train exits 0" test "$rc" -eq 0
check "one JSON object per iteration and a summary" test "$(field a iteration | wc -l)" -eq 8 -a "$(grep -c summary "$tmp/a.out")" -eq 1
check "iteration objects carry reward, accuracy and response length" \
  python3 -c 'import json,sys; o=json.loads(open(sys.argv[1]).readline()); sys.exit(0 if {"iteration","reward_mean","accuracy","response_length_mean","rollout_tokens_per_second","loss"} <= set(o) else 1)' "$tmp/a.out"
check "checkpoint with the policy and the RL state" \
  test -f "$tmp/a/checkpoints/step_00000008/model.safetensors" -a -f "$tmp/a/checkpoints/step_00000008/rl-state-00000-of-00001.json"
check "metrics log: 8 iterations and the summary" test "$(wc -l <"$tmp/a/metrics.jsonl")" -eq 9

# Stopped after 4 iterations and resumed: the same rewards as the run never stopped.
run b1 "${rlrun[@]}" train.steps=4 output.dir="$tmp/b" --init-from "$policy" --json
run b2 "${rlrun[@]}" output.dir="$tmp/b" --resume --json
check "resumed run repeats the uninterrupted one" \
  test "$(field a reward_mean | wc -l)" -eq 8 -a "$(field a reward_mean)" = "$(cat <(field b1 reward_mean) <(field b2 reward_mean))"

# Partial rollouts: cut at 6 tokens per iteration, groups wait in the buffer and still train.
run p "${rlrun[@]}" output.dir="$tmp/p" partial_rollout.enabled=true partial_rollout.segment_length=6 train.steps=6 \
  --init-from "$policy" --json
check "partial rollouts run" test "$rc" -eq 0
check "partial rollouts keep groups in the buffer, train them, and do not train earlier iterations' tokens" \
  python3 -c 'import json,sys
its=[o for o in map(json.loads, open(sys.argv[1])) if "iteration" in o]
sys.exit(0 if max(o["buffered_groups"] for o in its) > 0 and sum(o["groups_trained"] for o in its) > 0 and sum(o["stale_tokens"] for o in its) > 0 else 1)' "$tmp/p.out"

# A partial-rollout run stopped with trajectories in the replay buffer resumes them.
run p1 "${rlrun[@]}" output.dir="$tmp/p1" partial_rollout.enabled=true partial_rollout.segment_length=6 train.steps=3 \
  --init-from "$policy" --json
run p2 "${rlrun[@]}" output.dir="$tmp/p1" partial_rollout.enabled=true partial_rollout.segment_length=6 train.steps=6 \
  --resume --json
check "the buffer is checkpointed: resumed partial rollouts repeat the uninterrupted run" \
  test "$(field p buffered_groups | wc -l)" -eq 6 -a "$(field p reward_mean)" = "$(cat <(field p1 reward_mean) <(field p2 reward_mean))" \
  -a "$(sed -n 3p <(field p1 buffered_groups))" != "0.0"

# Data parallel: two ranks (ZeRO 0 and 2; 1 with partial rollouts) share the prompt groups and match one process: the
# same rollouts (per-group seeds), losses within 1e-6 (sums in another order; relative to at least 1e-3, since
# a loss near 0 is a difference of terms each of which carries rounding error).
if command -v mpirun >/dev/null; then
  # shellcheck source=support/mpi.sh
  source "$(dirname "${BASH_SOURCE[0]}")/support/mpi.sh"
  dp=("$rl" "${small[@]}" data.train_batch_size=8 rollout.n=8 optim.lr=1e-4 train.steps=4 output.checkpoints=false
      train.threads=1 --init-from "$policy" --json)
  "$bin/rl-train" "${dp[@]}" output.dir="$tmp/dp1" >"$tmp/dp1.out" 2>"$tmp/dp1.err"
  partial=(partial_rollout.enabled=true partial_rollout.segment_length=6)
  "$bin/rl-train" "${dp[@]}" "${partial[@]}" output.dir="$tmp/dp1p" >"$tmp/dp1p.out" 2>"$tmp/dp1p.err"
  for stage in 0 2 p; do
    extra=(zero.stage=${stage/p/1})
    [ "$stage" = p ] && extra+=("${partial[@]}")
    timeout 300 "${mpi[@]}" -np 2 "$bin/rl-train" "${dp[@]}" "${extra[@]}" output.dir="$tmp/dp2$stage" \
      >"$tmp/dp2$stage.out" 2>"$tmp/dp2$stage.err"
    check "2 ranks ($stage) exit 0" test $? -eq 0
    one="$tmp/dp1.out"
    [ "$stage" = p ] && one="$tmp/dp1p.out"
    check "2 ranks ($stage: ZeRO stage, p = stage 1 with partial rollouts) match one process" \
      python3 - "$one" "$tmp/dp2$stage.out" <<'EOF'
import json, sys
def its(path):
    return [o for o in map(json.loads, open(path)) if "iteration" in o]
a, b = its(sys.argv[1]), its(sys.argv[2])
ok = len(a) == len(b) == 4 and all(x["reward_mean"] == y["reward_mean"] and x["trained_tokens"] == y["trained_tokens"]
                                   and abs(x["loss"] - y["loss"]) <= 1e-6 * max(abs(x["loss"]), 1e-3) for x, y in zip(a, b))
sys.exit(0 if ok else 1)
EOF
  done
else
  echo "SKIP-PART: mpirun not installed: data-parallel rl-train not checked"
fi

# Long2short tools.
run m merge "$policy" "$tmp/a/checkpoints/step_00000008" --out "$tmp/merged" --alpha 0.5 --json
check "merge writes a model" test "$rc" -eq 0 -a -f "$tmp/merged/model.safetensors" -a -f "$tmp/merged/config.json"
check "merged weights are the average" python3 - "$policy/model.safetensors" "$tmp/a/checkpoints/step_00000008/model.safetensors" "$tmp/merged/model.safetensors" <<'EOF'
import json, struct, sys
def read(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; raw = b[8 + n + s:8 + n + e]
        out[k] = struct.unpack("<%df" % (len(raw) // 4), raw)
    return out
a, b, m = read(sys.argv[1]), read(sys.argv[2]), read(sys.argv[3])
worst = max(abs(0.5 * x + 0.5 * y - z) for k in a for x, y, z in zip(a[k], b[k], m[k]))
sys.exit(0 if worst < 1e-6 and a.keys() == m.keys() else 1)
EOF
run s sft-set "$rl" "${small[@]}" --init-from "$tmp/a/checkpoints/step_00000008" --out "$tmp/short.jsonl" \
  --max-problems 16 data.train_batch_size=8 rollout.n=4 --json
check "sft-set keeps the shortest correct samples" \
  python3 -c 'import json,sys; s=json.loads(open(sys.argv[1]).read()); n=sum(1 for _ in open(sys.argv[2])); sys.exit(0 if s["kept"]==n>0 and s["kept_length_mean"]<=s["sampled_length_mean"]+1e-9 else 1)' \
  "$tmp/s.out" "$tmp/short.jsonl"

# Bad input: one error line naming the key, exit code 2.
run e1 "${rlrun[@]}" output.dir="$tmp/e1" rollout.n=0
check "rollout.n=0 is refused" test "$rc" -eq 2
check "... naming the key" one_error_line e1 "rollout.n"
run e2 "${rlrun[@]}" output.dir="$tmp/e2" data.max_prompt_length=4
check "a prompt longer than data.max_prompt_length is refused naming the key" one_error_line e2 "data.max_prompt_length"
printf '{"prompt": "1+1=", "answer": "2"}\n{"prompt": 3}\n' >"$tmp/bad.jsonl"
run e3 "${rlrun[@]}" output.dir="$tmp/e3" task.name=file task.file="$tmp/bad.jsonl"
check "a malformed task file is refused naming file and line" one_error_line e3 "bad.jsonl:2"
run e4 "${rlrun[@]}" output.dir="$tmp/e4" data.packing_length=20
check "a packing length below prompt + response is refused" one_error_line e4 "data.packing_length"
run e5 "${rlrun[@]}" output.dir="$tmp/a" --init-from "$policy"
check "an output.dir with checkpoints needs --resume" one_error_line e5 "output.dir"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
