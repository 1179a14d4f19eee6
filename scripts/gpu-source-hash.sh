#!/usr/bin/env bash
# One hash of every source the GPU bundle's binaries are built from, so that scripts/gpu-check.sh
# can tell a bundle built from this tree (scripts/gpu-bundle.sh) from a stale one.
# Usage: scripts/gpu-source-hash.sh   (prints the hash)
set -euo pipefail
cd "$(dirname "$0")/.."
find apps lib kernels tests/cuda cmake CMakeLists.txt -type f \
  \( -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.cmake' -o -name 'CMakeLists.txt' \) -print0 |
  LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
