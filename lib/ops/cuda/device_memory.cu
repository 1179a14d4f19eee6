// The device-memory helpers of device_memory.hpp: cudaMemcpy on the legacy default stream and a
// grid-stride add, each waited for before returning (callers are tests and the world of one,
// where simplicity beats overlap).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "core/error.hpp"
#include "ops/cuda/device_memory.hpp"
#include "ops/cuda/kernel_launch.cuh"

namespace llmlab {
namespace {

void check(cudaError_t err, const char* call) {
  if (err != cudaSuccess) throw Error(std::string(call) + " failed: " + cudaGetErrorString(err));
}

void copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, const char* what) {
  if (bytes == 0 || dst == src) return;
  check(cudaMemcpyAsync(dst, src, bytes, kind, cudaStreamLegacy), what);
  check(cudaStreamSynchronize(cudaStreamLegacy), what);
}

__global__ void add_kernel(float* out, const float* in, std::int64_t n) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = __fadd_rn(out[i], in[i]);
}

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // "no driver" is an answer here, not an error to leave behind
    return 0;
  }
  return count;
}

void* device_alloc(std::size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  check(cudaMalloc(&p, bytes), ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
  return p;
}

void device_free(void* p) {
  if (p) check(cudaFree(p), "cudaFree");
}

void copy_to_device(void* device_dst, const void* host_src, std::size_t bytes) {
  copy(device_dst, host_src, bytes, cudaMemcpyHostToDevice, "cudaMemcpy host to device");
}

void copy_to_host(void* host_dst, const void* device_src, std::size_t bytes) {
  copy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, "cudaMemcpy device to host");
}

void device_copy(void* dst, const void* src, std::size_t bytes) {
  copy(dst, src, bytes, cudaMemcpyDeviceToDevice, "cudaMemcpy device to device");
}

void device_add(float* out, const float* in, std::int64_t n) {
  if (n <= 0) return;
  // 256 threads, at most 1024 blocks: a grid-stride loop covers any n; this is not a hot path.
  const std::int64_t blocks = std::min<std::int64_t>((n + 255) / 256, 1024);
  LLMLAB_LAUNCH(add_kernel, static_cast<unsigned>(blocks), 256, 0, cudaStreamLegacy)(out, in, n);
  check(cudaGetLastError(), "device_add kernel launch");
  check(cudaStreamSynchronize(cudaStreamLegacy), "device_add");
}

}  // namespace llmlab
