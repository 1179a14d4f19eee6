#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds llmlab and runs the main job on the embedded
# default data: pack the shipped samples (data/samples/mixed.jsonl) into 512-token rows with the
# byte-level tokenizer, show a packed row, then plan Llama-2-7B pretraining on one 8 x H100 node
# and the configuration --fit recommends for 40 GiB cards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target pack-data memory-plan
build/release/bin/pack-data recipes/tiny/pack_cpu.yaml
build/release/bin/pack-data inspect packed/tiny/shard-00000.bin --rows 0 --show-mask
echo
build/release/bin/memory-plan recipes/llama2/7b_pretrain_8gpu.yaml
echo
build/release/bin/memory-plan recipes/llama2/7b_pretrain_8gpu.yaml --fit 40GiB | head -n 14
