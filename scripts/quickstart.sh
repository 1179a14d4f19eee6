#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds llmlab and runs the main job on data that comes
# from Debian packages (no download): pack the `fortunes` corpus into 512-token rows with the
# byte-level tokenizer (two files held out for evaluation), print the memory plan of the tiny
# Llama recipe, then train it for about a minute on the CPU with the loss falling, ending with
# measured against planned peak memory. Finally, plan Llama-2-7B on one 8 x H100 node.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh fortunes
cmake --preset release >/dev/null
cmake --build --preset release --target pack-data memory-plan train
bin=build/release/bin

fortune_dir=/usr/share/games/fortunes
held_out=(wisdom science)
train_files=() eval_files=()
for f in $(find "$fortune_dir" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort); do
  if [[ " ${held_out[*]} " == *" $(basename "$f") "* ]]; then eval_files+=("$f"); else train_files+=("$f"); fi
done
join() { local IFS=,; echo "$*"; }
pack() {  # pack OUTPUT FILES...
  local out=$1; shift
  "$bin/pack-data" recipes/tiny/pack_cpu.yaml "data.inputs=[$(join "$@")]" data.format=text \
    'data.text_delimiter="\n%\n"' data.output="$out" --quiet | tail -n +2
}
echo "== pack-data: fortunes (${#train_files[@]} files) and held-out ${held_out[*]}"
pack packed/fortunes "${train_files[@]}"
pack packed/fortunes-eval "${eval_files[@]}" >/dev/null
echo
echo "== memory-plan: the tiny Llama on this CPU"
"$bin/memory-plan" recipes/tiny/llama_fortunes_cpu.yaml
echo
echo "== train: about a minute on the CPU"
rm -rf runs/tiny-llama-fortunes   # the demo's own run directory: start fresh each time
"$bin/train" recipes/tiny/llama_fortunes_cpu.yaml
echo
echo "== memory-plan: Llama-2-7B pretraining on 8 x H100"
"$bin/memory-plan" recipes/llama2/7b_pretrain_8gpu.yaml | head -n 24
