#!/usr/bin/env bash
# The CUDA attention kernels against the CPU backend: runs llmlab_cuda_tests when the build has
# CUDA. Usage: cuda_kernels.sh BIN_DIR SOURCE_DIR. Without CUDA in the build, or without a device
# (the binary prints "SKIP: no CUDA device"), ctest reports a skip.
set -euo pipefail
bin_dir=$1
source_dir=$2
if [[ ! -x "$bin_dir/llmlab_cuda_tests" ]]; then
  echo "SKIP: built without CUDA"
  exit 0
fi
bin_dir=$(cd "$bin_dir" && pwd)
cd "$source_dir"
exec "$bin_dir/llmlab_cuda_tests"
