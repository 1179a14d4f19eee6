// Plain device-memory helpers behind a CUDA-free interface, for code outside lib/ops/cuda that
// moves fp32 buffers to and from a GPU: the world-of-one communicator with device buffers and
// comm-check --device cuda. Each call is issued on the legacy default stream (so it is ordered
// after the caller's device work there) and returns once the device has finished it, so a
// buffer is usable from any stream, and by the host, on return. Errors throw Error naming the
// CUDA call. Defined only in builds with CUDA (LLMLAB_HAVE_CUDA).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace llmlab {

// CUDA devices this process can use; 0 (never an error) when there is no driver or no device.
int cuda_device_count();

// cudaMalloc / cudaFree on the current device. device_free(nullptr) does nothing; freeing
// waits for the whole device (cudaFree synchronises), so free when nothing is in flight.
void* device_alloc(std::size_t bytes);
void device_free(void* p);

void copy_to_device(void* device_dst, const void* host_src, std::size_t bytes);
void copy_to_host(void* host_dst, const void* device_src, std::size_t bytes);
// Device to device; the ranges must be equal (then nothing is copied) or disjoint.
void device_copy(void* dst, const void* src, std::size_t bytes);
// out[i] += in[i] for i < n, fp32, one rounding per element (no contraction: only adds).
void device_add(float* out, const float* in, std::int64_t n);

// One device allocation, freed with its owner (a free that fails in the destructor is
// swallowed: it can only follow an error already being reported).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) : p_(bytes ? device_alloc(bytes) : nullptr), bytes_(bytes) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    try {
      device_free(p_);
    } catch (...) {
    }
  }
  void* get() const { return p_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace llmlab
