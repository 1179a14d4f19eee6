#!/usr/bin/env bash
# Installs every build and test dependency of llmlab from Debian 12 packages.
# Idempotent: packages already present are skipped, so CI and quickstart can call it freely.
# The CUDA toolkit and NCCL are not installed here: they come with the machine image
# (nvcc on the PATH); the build compiles CUDA code only when nvcc is found.
# Extra package names given as arguments are installed too (benchmark corpora, for instance).
# Usage: scripts/setup.sh [PACKAGE ...]
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libcli11-dev          # command-line parsing for all five tools
  libyaml-cpp-dev       # recipes: YAML with line/column marks for error messages
  libfmt-dev            # formatting of tables, numbers and messages
  nlohmann-json3-dev    # --json output, manifests, tokenizer.json and precise JSON error positions
  libsimdjson-dev       # fast JSONL parsing in pack-data
  doctest-dev           # unit tests
  libdnnl-dev           # CPU GEMM (oneDNN): ~350 GFLOP/s here vs 65 for Debian's OpenBLAS
  libomp-dev            # OpenMP for CPU kernels
  libopenmpi-dev openmpi-bin   # CPU multi-process training and NCCL bootstrap
  libpcre2-dev          # tokenizer pre-tokenizer regexes (Unicode classes, lookahead)
  libxxhash-dev         # shard checksums
  libboost-context-dev  # fibers for the CUDA emulator that runs the CUDA kernels' tests on CPUs
  libutf8proc-dev       # NFC normalization for tokenizers that ask for it (Qwen)
  zlib1g-dev            # reading .gz datasets
  python3               # CLI tests read --json output; benchmark scripts
)
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has an empty package index; refresh it once, then install.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
