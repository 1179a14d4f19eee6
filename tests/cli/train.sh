#!/usr/bin/env bash
# End-to-end test of the real train binary on the shipped samples with a tiny Llama:
# the loss falls, measured peak memory matches the plan, a run stopped (exit interval or
# Ctrl-C) and resumed prints the same losses as one never stopped, --init-from, checkpoint
# policies give the same losses, and bad input ends with one error line and exit code 2.
# Usage: bash train.sh BIN_DIR SOURCE_DIR
set -u
bin="$1"
src="$2"
# shellcheck source=support/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/harness.sh"
tool="$bin/train"
# shellcheck source=support/train_json.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/train_json.sh"

"$bin/pack-data" "$src/recipes/tiny/pack_cpu.yaml" data.packing_length=128 data.output="$tmp/packed" --quiet >/dev/null ||
  { echo "FAIL: packing the samples"; exit 1; }
recipe="$src/recipes/tiny/llama_pretrain_cpu.yaml"
tiny=(model.hidden_size=64 model.num_layers=2 model.num_heads=4 model.num_kv_heads=2 model.intermediate_size=172
      data.packing_length=128 train.micro_batch_size=4 "data.shards=[$tmp/packed]" optim.lr=3e-3 optim.warmup_steps=2
      train.steps=12 train.threads=2)

run a "$recipe" "${tiny[@]}" output.dir="$tmp/a" --json
check "train exits 0" test "$rc" -eq 0
check "one JSON object per step" test "$(losses a | wc -l)" -eq 12
check "the loss falls by more than 1.5 nats in 12 steps" \
  python3 -c "import sys; l=[float(x.split()[1]) for x in sys.stdin]; sys.exit(0 if l[0]-l[-1] > 1.5 else 1)" < <(losses a)
check "measured peak memory within 3% of the plan" \
  python3 -c "import sys; sys.exit(0 if abs($(summary a 's["memory"]["relative_error"]')) < 0.03 else 1)"
check "final checkpoint in safetensors" test -f "$tmp/a/checkpoints/step_00000012/model.safetensors"
check "metrics log: 12 steps and the summary" test "$(wc -l <"$tmp/a/metrics.jsonl")" -eq 13

# Stopped at step 5 by the exit interval, then resumed: the same losses, bit for bit.
run b1 "$recipe" "${tiny[@]}" output.dir="$tmp/b" train.exit_interval=5 --json
check "exit interval stops cleanly" test "$rc" -eq 0
run b2 "$recipe" "${tiny[@]}" output.dir="$tmp/b" --resume --json
check "resume exits 0" test "$rc" -eq 0
check "resumed run prints the same losses" diff <(losses a) <(cat <(losses b1) <(losses b2))

# Ctrl-C saves a checkpoint and exits 130; --resume continues.
"$bin/train" "$recipe" "${tiny[@]}" output.dir="$tmp/c" train.steps=100000 --quiet >"$tmp/c.out" 2>"$tmp/c.err" &
pid=$!
for _ in $(seq 600); do [ -s "$tmp/c/metrics.jsonl" ] && break; sleep 0.1; done
kill -INT "$pid"
wait "$pid"
rc=$?
check "Ctrl-C exits 130" test "$rc" -eq 130
check "Ctrl-C leaves a checkpoint" test -n "$(ls -d "$tmp"/c/checkpoints/step_* 2>/dev/null)"
done_steps=$(ls -d "$tmp"/c/checkpoints/step_* | sed 's/.*step_0*//' | sort -n | tail -1)
run c2 "$recipe" "${tiny[@]}" output.dir="$tmp/c" train.steps=$((done_steps + 2)) --resume --json
check "resume after Ctrl-C runs the remaining steps" test "$rc" -eq 0 -a "$(losses c2 | wc -l)" -eq 2

# Every checkpointing policy trains the same (bit-identical gradients).
for policy in full "selective checkpointing.selective=pointwise" "every_k checkpointing.every_k=2"; do
  # shellcheck disable=SC2086
  run p "$recipe" "${tiny[@]}" output.dir="$tmp/p-${policy%% *}" train.steps=3 checkpointing.policy=$policy --json
  run n "$recipe" "${tiny[@]}" output.dir="$tmp/n-${policy%% *}" train.steps=3 --json
  check "policy $policy: same losses as none" diff <(losses p) <(losses n)
done

run init "$recipe" "${tiny[@]}" output.dir="$tmp/d" train.steps=1 --init-from "$tmp/a/checkpoints/step_00000012" --json
check "--init-from exits 0" test "$rc" -eq 0
check "--init-from starts from the trained loss" \
  python3 -c "import sys; sys.exit(0 if $(losses init | cut -d' ' -f2) < $(losses a | sed -n 1p | cut -d' ' -f2) - 1 else 1)"

# Bad input: one line, exit 2, nothing written.
run exists "$recipe" "${tiny[@]}" output.dir="$tmp/a"
check "existing checkpoints without --resume exit 2" test "$rc" -eq 2
check "... naming output.dir" one_error_line exists "output.dir: .*--resume"
run vocab "$recipe" "${tiny[@]}" output.dir="$tmp/e" model.vocab_size=200
check "a vocabulary smaller than the shards' exits 2" test "$rc" -eq 2
check "... naming the tokenizer and model.vocab_size" one_error_line vocab "model.vocab_size = 200"
cp -r "$tmp/packed" "$tmp/corrupt"
printf 'X' | dd of="$tmp/corrupt/shard-00000.bin" bs=1 seek=300 conv=notrunc status=none
run corrupt "$recipe" "${tiny[@]}" output.dir="$tmp/e" "data.shards=[$tmp/corrupt]"
check "a corrupt shard exits 2" test "$rc" -eq 2
check "... naming the shard" one_error_line corrupt "shard-00000.bin"
run batch "$recipe" "${tiny[@]}" output.dir="$tmp/e" train.micro_batch_size=100000
check "a batch larger than the data exits 2" test "$rc" -eq 2
check "... naming train.micro_batch_size" one_error_line batch "train.micro_batch_size"
# GPT-2's learned positions: the samples' long documents continue past 512 positions when split.
run positions "$src/recipes/tiny/gpt2_pretrain_cpu.yaml" model.hidden_size=64 model.num_layers=1 model.num_heads=4 \
  model.num_kv_heads=4 data.packing_length=128 "data.shards=[$tmp/packed]" output.dir="$tmp/positions"
check "split documents beyond gpt2's position table: exit 2" test "$rc" -eq 2
check "... naming the positions and model.max_position_embeddings" one_error_line positions \
  "data.shards: long documents were split into rows that continue to position [0-9]*, but gpt2's learned positions stop at model.max_position_embeddings = 512"
run unwritable "$recipe" "${tiny[@]}" output.dir="$tmp/packed/manifest.json/run"
check "an unwritable output directory fails" test "$rc" -ne 0
check "... with one line naming it" one_error_line unwritable "manifest.json"
check "no run directory was created for failed runs" test ! -e "$tmp/e"
run bf16 "$recipe" "${tiny[@]}" output.dir="$tmp/e" train.precision=bf16-mixed
check "bf16 on the CPU exits 2 naming train.precision" test "$rc" -eq 2
check "... with an error naming train.precision" grep -q "^train: error: .*train.precision: the CPU backend trains in fp32" "$tmp/bf16.err"

run nan "$recipe" "${tiny[@]}" output.dir="$tmp/f" optim.lr=1e12 optim.grad_clip=0 train.steps=20 --quiet
check "a diverging run stops with exit 1" test "$rc" -eq 1
check "... naming the step" one_error_line nan "step [0-9]*: the loss is nan: stopping"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
