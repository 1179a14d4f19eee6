#!/usr/bin/env bash
# Builds the binaries scripts/gpu-check.sh runs (bench-attn, llmlab_cuda_tests; CUDA for
# sm_90a) here and packs them, with every shared library they load that a bare GPU machine
# lacks, into .gpu-bundle/llmlab-gpu.tar.gz. The lent GPU machine has nvcc and the CUDA
# libraries but none of our Debian packages (yaml-cpp, fmt, oneDNN, OpenMPI...) and no network,
# and its 15 minutes are too few to compile the kernels there; so device calls carry this
# bundle (`carry: [".gpu-bundle"]`) and gpu-check.sh runs it, building only without one.
# Left out, found on the GPU machine at run time: glibc, the driver (libcuda) and the toolkit's
# cuBLAS and NCCL (hundreds of MB; manifest.txt lists them under device_libs).
# Usage: scripts/gpu-bundle.sh [BUILD_DIR]   (default build/gpu; configured when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/gpu}"
command -v nvcc >/dev/null || { echo "gpu-bundle: nvcc not found: the bundle needs the CUDA build" >&2; exit 1; }

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMLAB_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DLLMLAB_WERROR=OFF
fi
grep -q '^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=.*90a' "$build/CMakeCache.txt" ||
  { echo "gpu-bundle: $build is not built for sm_90a (CMAKE_CUDA_ARCHITECTURES)" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" --target bench-attn llmlab_cuda_tests

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/llmlab-gpu"
mkdir -p "$root/bin" "$root/lib"
binaries=(bench-attn llmlab_cuda_tests)
for b in "${binaries[@]}"; do
  cp "$build/bin/$b" "$root/bin/"
  strip --strip-unneeded "$root/bin/$b"   # host symbols only; the device code (fatbin) stays
done

# Every library ldd resolves, except glibc's own (any machine has a compatible or newer one),
# the driver and the CUDA toolkit's large libraries, which the GPU machine's image provides.
linked=$(for b in "${binaries[@]}"; do ldd "$build/bin/$b"; done)
if grep -q 'not found' <<<"$linked"; then
  echo "gpu-bundle: a library of the binaries is not found here (ldd)" >&2; exit 1
fi
device_libs=()
while read -r soname path; do
  case "$soname" in
    linux-vdso* | ld-linux* | libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | libresolv.so*) ;;
    libcuda.so* | libnvidia-*) ;;
    libcublas* | libnccl* | libcudart.so*) device_libs+=("$soname") ;;
    *) [ -e "$root/lib/$soname" ] || cp -L "$path" "$root/lib/$soname" ;;
  esac
done < <(awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' <<<"$linked" | sort -u)

source_hash=$(scripts/gpu-source-hash.sh)
{
  echo "source_hash $source_hash"
  echo "git $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD -- 2>/dev/null || echo '+uncommitted')"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME"), $(nvcc --version | tail -1)"
  echo "device_libs $(printf '%s\n' "${device_libs[@]}" | sort -u | tr '\n' ' ')"
} >"$root/manifest.txt"

mkdir -p .gpu-bundle
# gzip rather than xz: 18 MB instead of 11, but any machine unpacks it.
tar -C "$stage" -czf .gpu-bundle/llmlab-gpu.tar.gz.tmp llmlab-gpu
mv .gpu-bundle/llmlab-gpu.tar.gz.tmp .gpu-bundle/llmlab-gpu.tar.gz
rm -f .gpu-bundle/llmlab-gpu.tar.xz  # an older bundle's name
cat "$root/manifest.txt"
echo "gpu-bundle: .gpu-bundle/llmlab-gpu.tar.gz ($(du -h .gpu-bundle/llmlab-gpu.tar.gz | cut -f1)," \
  "$(ls "$root/lib" | wc -l) libraries); carry it: run(carry=[\".gpu-bundle\"], command=\"scripts/gpu-check.sh \$OUT\")"
