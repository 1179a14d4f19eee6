#!/usr/bin/env bash
# Sets up, builds with warnings as errors (CUDA code included when nvcc exists) and runs every
# test; then the same tests under AddressSanitizer + UBSan. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
# Both builds' tokenizer-parity tests share one npm install and the reference's cached ids.
export LLMLAB_TOKENIZER_PARITY_DIR="$PWD/build/tokenizer-parity"
cmake --preset ci >/dev/null
cmake --build --preset ci -j "$jobs"
ctest --preset ci -j "$jobs"
if [ "${LLMLAB_SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ctest --preset asan -j "$jobs"
fi
