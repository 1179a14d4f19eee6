// The CUDA subset llmlab's kernels use, executed on the CPU, so that the kernels' own sources
// (kernels/**/*.cu, lib/ops/cuda/device_memory.cu) are compiled by the host compiler and tested
// on machines without a GPU. Included through the shim headers next to it (cuda_runtime.h,
// cuda_bf16.h, cuda_fp16.h, cublas_v2.h), which the emulated build puts ahead of the toolkit's.
//
// What is emulated, and how faithfully:
//   - Every CUDA thread of a block is a fiber (Boost.Context); a block's threads run on one OS
//     thread, switching only at __syncthreads and at warp-collective instructions, in an order
//     shuffled each round (seeded; LLMLAB_EMU_SEED). In half the blocks one warp, chosen at
//     random, straggles: it runs only when no other thread can get further, so the others race
//     ahead to their next barrier, and a missing barrier shows up as data read too early or
//     overwritten too soon.
//     Blocks run one after another; a whole grid runs inside the launch (streams are ignored).
//   - Warp-collective instructions (mma.sync m16n8k16 bf16/fp16 -> fp32, ldmatrix.x4 with and
//     without .trans, shfl.xor) gather all 32 lanes' operands and apply the PTX ISA's fragment
//     layouts; all 32 lanes must execute the same instruction (divergence is an error).
//   - Each cp.async lands, at random, either when issued or only when the issuing thread's
//     cp.async.wait_group releases its group (the earliest and the latest moments the PTX memory
//     model allows): a read before the wait sees stale shared memory, and a copy into a buffer
//     other warps still read (a missing barrier) overwrites it under them.
//   - Dynamic shared memory is filled with 0xff bytes (NaN in fp32, bf16 and fp16) at each block
//     start; shared addresses and sizes are checked against the launch's dynamic shared memory and
//     the kernel's cudaFuncAttributeMaxDynamicSharedMemorySize (48 KB without it, at most the
//     H100/H200's 227 KB). cp.async sources must lie inside one cudaMalloc allocation.
//   - A deadlock (a __syncthreads or collective some threads never reach) is an error naming the
//     block and what each warp waits at, not a hang.
//   - ldmatrix bank conflicts are counted (stats()): the 8 row addresses of each 8x8 matrix
//     should fall in 8 different 16-byte bank groups.
// Not emulated: timing, registers, occupancy, L1/L2 behaviour, tensor-core rounding beyond fp32
// accumulation in k order, concurrency between blocks (atomics are plain adds).
// Errors throw std::runtime_error("cuda emulator: ...") out of the launch.
#pragma once

#include <math.h>  // the C math functions device code calls unqualified (expf, exp2f, fmaxf, ...)

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "core/half_float.hpp"

// ---- language -------------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Static __shared__ arrays: blocks run one at a time and their threads share one address space,
// so a function-local static is exactly one array per block.
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }

// The running thread's coordinates (the scheduler sets them at every switch).
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float __fadd_rn(float a, float b) { return a + b; }

// ---- 16-bit types (bits only; the kernels convert explicitly) --------------------------------

struct __nv_bfloat16 {
  std::uint16_t bits;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;  // x in the low half, as in CUDA
};
struct __half {
  std::uint16_t bits;
};
struct __half2 {
  __half x, y;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {llmlab::float_to_bf16(f)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return llmlab::bf16_to_float(h.bits); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
inline __half __float2half_rn(float f) { return {llmlab::float_to_fp16(f)}; }
inline float __half2float(__half h) { return llmlab::fp16_to_float(h.bits); }
inline __half2 __floats2half2_rn(float lo, float hi) { return {__float2half_rn(lo), __float2half_rn(hi)}; }

// ---- runtime API ------------------------------------------------------------------------------

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidResourceHandle = 400,
};
using cudaStream_t = struct CUstream_st*;
using cudaEvent_t = struct CUevent_st*;
#define cudaStreamLegacy (reinterpret_cast<cudaStream_t>(0x1))
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType_t = cudaDataType;
struct cudaDeviceProp {
  char name[256];
  std::size_t totalGlobalMem;
  int major, minor, multiProcessorCount;
};

const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaMalloc(void** ptr, std::size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t stream);
cudaError_t cudaMemset2DAsync(void* ptr, std::size_t pitch, int value, std::size_t width, std::size_t height,
                              cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);

namespace llmlab::emu {

// ---- what the emulator provides to the shims and the kernels' wrappers ----------------------

// Statistics since the last reset_stats(), for tests of the emulated kernels.
struct Stats {
  std::uint64_t blocks = 0;             // blocks run
  std::uint64_t mma = 0;                // warp-wide mma.sync m16n8k16
  std::uint64_t ldmatrix = 0;           // warp-wide ldmatrix.x4
  std::uint64_t ldmatrix_conflicts = 0; // extra shared-memory wavefronts ldmatrix needed (0: conflict-free)
  std::uint64_t cp_async = 0;           // 16-byte cp.async copies
};
Stats& stats();
void reset_stats();

cudaError_t set_max_dynamic_shared(const void* kernel, int bytes);
// Runs body() as every thread of every block of the grid; returns when the grid is done.
void run_grid(const void* kernel, dim3 grid, dim3 block, std::size_t dynamic_shared,
              const std::function<void()>& body);

void syncthreads();
std::uint32_t shfl_xor(std::uint32_t value, int lane_mask);
enum class MmaType { bf16, fp16 };
void mma_m16n8k16(MmaType type, float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1);
void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t shared_address, bool trans);
void cp_async_16(std::uint32_t shared_dst, const void* global_src, bool valid);
void cp_async_commit();
void cp_async_wait(int pending_groups);
unsigned char* dynamic_shared_memory();
std::uint32_t shared_address(const void* p);

// kernel<<<grid, block, shared, stream>>>(args...) as launch(kernel, grid, block, shared, stream)(args...).
template <typename... Params>
struct Launch {
  void (*kernel)(Params...);
  dim3 grid, block;
  std::size_t shared;
  template <typename... Args>
  void operator()(Args&&... args) const {
    const std::tuple<std::decay_t<Params>...> values(std::forward<Args>(args)...);
    run_grid(reinterpret_cast<const void*>(kernel), grid, block, shared, [&] { std::apply(kernel, values); });
  }
};
template <typename... Params>
Launch<Params...> launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared, cudaStream_t) {
  return {kernel, grid, block, shared};
}

}  // namespace llmlab::emu

template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return llmlab::emu::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
}

// ---- device functions ---------------------------------------------------------------------------

inline void __syncthreads() { llmlab::emu::syncthreads(); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
  static_assert(sizeof(T) == 4, "32-bit shuffles only");
  if (mask != 0xffffffffu) throw std::runtime_error("cuda emulator: only full-warp shuffles are emulated");
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits = llmlab::emu::shfl_xor(bits, lane_mask);
  std::memcpy(&value, &bits, 4);
  return value;
}

// Blocks run one at a time on one OS thread: an atomic add is a plain add.
inline float atomicAdd(float* address, float value) {
  const float old = *address;
  *address = old + value;
  return old;
}
inline float2 atomicAdd(float2* address, float2 value) {
  const float2 old = *address;
  *address = {old.x + value.x, old.y + value.y};
  return old;
}
