// The emulated CUDA runtime API: one device whose "device memory" is host memory, registered
// so that copies, memsets and cp.async can be checked against the allocations; synchronous
// copies and launches (so events time the host work between them).
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "emulator_state.hpp"

namespace {

std::map<const unsigned char*, std::size_t>& allocations() {
  static std::map<const unsigned char*, std::size_t> m;
  return m;
}
std::mutex& allocations_mutex() {
  static std::mutex m;
  return m;
}

bool inside(const void* p, std::size_t bytes) {
  const auto* c = static_cast<const unsigned char*>(p);
  std::lock_guard lock(allocations_mutex());
  auto it = allocations().upper_bound(c);
  if (it == allocations().begin()) return false;
  --it;
  return c >= it->first && c + bytes <= it->first + it->second;
}

struct Event {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};

}  // namespace

namespace llmlab::emu::detail {
bool in_device_allocation(const void* p, std::size_t bytes) { return inside(p, bytes); }
}  // namespace llmlab::emu::detail

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() { return cudaSuccess; }  // launch errors throw instead

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return cudaErrorInvalidValue;
  *prop = {};
  std::strncpy(prop->name, "llmlab CUDA emulator", sizeof prop->name - 1);
  prop->totalGlobalMem = 24ull << 30;
  prop->major = 9;
  prop->minor = 0;
  // A few multiprocessors, so that persistent kernels (a grid of one CTA per SM looping over
  // tiles) run both several CTAs and several tiles per CTA on the emulated device.
  prop->multiProcessorCount = 4;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp prop{};
  if (!value || attr != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
  const cudaError_t err = cudaGetDeviceProperties(&prop, device);
  if (err == cudaSuccess) *value = prop.multiProcessorCount;
  return err;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  // 256-byte aligned like cudaMalloc, and filled with 0xff (NaN in every float format) because
  // device memory starts with whatever was there.
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!p) return cudaErrorMemoryAllocation;
  std::memset(p, 0xff, bytes);
  std::lock_guard lock(allocations_mutex());
  allocations()[static_cast<const unsigned char*>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  {
    std::lock_guard lock(allocations_mutex());
    if (allocations().erase(static_cast<const unsigned char*>(ptr)) == 0) return cudaErrorInvalidDevicePointer;
  }
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if ((dst_device && !inside(dst, bytes)) || (src_device && !inside(src, bytes))) return cudaErrorInvalidValue;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t) {
  if (bytes == 0) return cudaSuccess;
  if (!inside(ptr, bytes)) return cudaErrorInvalidValue;
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset2DAsync(void* ptr, std::size_t pitch, int value, std::size_t width, std::size_t height,
                              cudaStream_t) {
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > pitch || !inside(ptr, pitch * (height - 1) + width)) return cudaErrorInvalidValue;
  for (std::size_t r = 0; r < height; ++r) std::memset(static_cast<unsigned char*>(ptr) + r * pitch, value, width);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = reinterpret_cast<cudaEvent_t>(new Event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (!event) return cudaErrorInvalidResourceHandle;
  auto* e = reinterpret_cast<Event*>(event);
  e->at = std::chrono::steady_clock::now();
  e->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) { return event ? cudaSuccess : cudaErrorInvalidResourceHandle; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  const auto *a = reinterpret_cast<Event*>(start), *b = reinterpret_cast<Event*>(end);
  if (!a || !b || !a->recorded || !b->recorded) return cudaErrorInvalidResourceHandle;
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<Event*>(event);
  return cudaSuccess;
}
