#!/usr/bin/env bash
# Times memory-plan (release build): single plans per policy, a whole CLI run, 1,000-point
# sweeps and --fit. Medians of repeated runs on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset release >/dev/null
cmake --build --preset release --target plan-speed >/dev/null
build/release/bin/plan-speed "$PWD"
