#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds llmlab and runs the main job on the shipped
# default: the memory plan of Llama-2-7B pretraining on one 8 x H100 node, then the
# configuration --fit recommends for 40 GiB cards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target memory-plan
build/release/bin/memory-plan recipes/llama2/7b_pretrain_8gpu.yaml
echo
build/release/bin/memory-plan recipes/llama2/7b_pretrain_8gpu.yaml --fit 40GiB | head -n 14
