// The CUDA subset llmlab's kernels use, executed on the CPU, so that the kernels' own sources
// (kernels/**/*.cu, lib/ops/cuda/device_memory.cu) are compiled by the host compiler and tested
// on machines without a GPU. Included through the shim headers next to it (cuda_runtime.h,
// cuda_bf16.h, cuda_fp16.h, cublas_v2.h), which the emulated build puts ahead of the toolkit's.
//
// What is emulated, and how faithfully:
//   - Every CUDA thread of a block is a fiber (Boost.Context); a block's threads run on one OS
//     thread, switching only at barriers (__syncthreads, bar.sync), warp-collective instructions
//     and failing mbarrier.try_wait polls, in an order
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
//   - sm_90 (sm90_tma.cpp, sm90_wgmma.cpp, barriers.cpp): a TMA box lands, at random, when issued,
//     at a later scheduling round, or at the latest when a thread polls its mbarrier (its bytes keep
//     the barrier's phase open until then); a wgmma group executes, reading its shared operands
//     then, at random at its commit_group or at the wait_group that retires it. Named barriers and
//     mbarriers count arrivals per thread; an mbarrier's state lives beside shared memory.
//   - A deadlock (a barrier or collective some threads never reach, an mbarrier phase nothing
//     completes) is an error naming the block and what each thread waits at, not a hang.
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
#define __grid_constant__
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
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
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
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
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

enum cudaDriverEntryPointQueryResult {
  cudaDriverEntryPointSuccess = 0,
  cudaDriverEntryPointSymbolNotFound = 1,
  cudaDriverEntryPointVersionNotSufficent = 2,
};
#define cudaEnableDefault 0x0
// Knows "cuTensorMapEncodeTiled" (the emulator's, see cuda.h).
cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** function, unsigned int cuda_version,
                                             unsigned long long flags, cudaDriverEntryPointQueryResult* status);

namespace llmlab::emu {

// ---- what the emulator provides to the shims and the kernels' wrappers ----------------------

// Statistics since the last reset_stats(), for tests of the emulated kernels.
struct Stats {
  std::uint64_t blocks = 0;             // blocks run
  std::uint64_t mma = 0;                // warp-wide mma.sync m16n8k16
  std::uint64_t ldmatrix = 0;           // warp-wide ldmatrix.x4
  std::uint64_t ldmatrix_conflicts = 0; // extra shared-memory wavefronts ldmatrix needed (0: conflict-free)
  std::uint64_t cp_async = 0;           // 16-byte cp.async copies
  std::uint64_t wgmma = 0;              // warpgroup-wide wgmma.mma_async m64nNk16
  std::uint64_t tma_loads = 0;          // cp.async.bulk.tensor tile loads
  std::uint64_t tma_bytes = 0;          // bytes they bring into shared memory (boxes, zero fill included)
  std::uint64_t mbarrier_waits = 0;     // mbarrier.try_wait.parity that found their phase complete
  std::uint64_t bulk_reduces = 0;       // cp.reduce.async.bulk operations
  std::uint64_t bulk_reduce_bytes = 0;  // bytes they add into global memory
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

// ---- sm_90 (Hopper): mbarrier, TMA, wgmma, named barriers -------------------------------------
// Implemented in barriers.cpp, sm90_tma.cpp and sm90_wgmma.cpp from the PTX ISA's definitions. Shared addresses are those
// shared_address() returns (offsets from the start of the launch's dynamic shared memory).

// mbarrier objects (8 bytes, 8-byte aligned, in dynamic shared memory). A phase completes when its
// pending arrival count reaches 0 and its transaction count is 0; the next phase then starts with
// the count given at init. try_wait_parity(bar, p) is true once the phase of parity p has
// completed, i.e. the current phase's parity differs from p (so a fresh barrier reports parity 1
// as complete, which is how producers pass their first wait on an "empty" barrier).
// A failing try_wait yields to the scheduler and does not count as progress (a spin loop on a
// barrier that nothing will complete is reported as a deadlock, with the barrier's state).
// Checked: 8-byte alignment, inside dynamic shared memory, initialised before use, no more
// arrivals than the count in one phase, tx-count within the PTX range (+-(2^20 - 1)), no TMA box
// landing over an mbarrier.
void mbarrier_init(std::uint32_t bar, std::uint32_t arrivals);
void mbarrier_arrive(std::uint32_t bar);
void mbarrier_arrive_expect_tx(std::uint32_t bar, std::uint32_t tx_bytes);  // expect_tx then arrive
bool mbarrier_try_wait_parity(std::uint32_t bar, std::uint32_t parity);
void fence_barrier_init();  // fence.mbarrier_init.release.cluster
// Generic-proxy stores to shared memory (st.shared) that the async proxy may read later: each is
// recorded until the storing thread's next fence.proxy.async.shared::cta; a wgmma or bulk copy
// that reads a recorded byte is an error (the PTX memory model gives it no ordering with the store).
void st_shared(std::uint32_t addr, const void* src, std::size_t bytes);
void fence_proxy_async();

// TMA: cp.async.bulk.tensor.{1-5}d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// [dst], [tensor_map, {coords}], [bar]: copies the tensor map's box at coords (innermost first,
// in elements; out-of-range elements are zero) into shared memory at dst in the map's swizzle
// mode, then performs complete_tx(box bytes) on bar. The copy lands at random either when issued
// or later (before the barrier's phase can complete), so reading the box before waiting on the
// barrier sees stale shared memory. dst is 128-byte aligned (1024 with the 128B swizzle); global
// reads must lie in the cudaMalloc allocation of the map's address. Interleaved maps, the NaN
// out-of-bounds fill and element strides other than 1 are accepted by cuTensorMapEncodeTiled but
// not emulated by tma_load (an error).
void tma_load(std::uint32_t dst, const void* tensor_map, const int* coords, int rank, std::uint32_t bar);
void prefetch_tensormap(const void* tensor_map);

// Bulk reductions: cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [dst], [src], bytes
// adds the fp32 values of shared [src, src + bytes) into global [dst, ..), asynchronously. A
// thread's bulk operations since its last cp.async.bulk.commit_group form a bulk group;
// cp.async.bulk.wait_group.read n returns once at most n of its groups may still read their
// shared source. Each operation is performed at random either at issue or at the wait that
// retires its group, so a source overwritten before that wait adds the new values. Checked: both
// addresses 16-byte aligned, bytes a positive multiple of 16, the source inside dynamic shared
// memory, the destination inside one device allocation, and no thread ends with a bulk
// operation it has not waited for (committed and retired by a wait_group.read).
void bulk_reduce_add_f32(float* dst, std::uint32_t src, std::uint32_t bytes);
void bulk_commit_group();
void bulk_wait_group_read(int pending);
void syncwarp();  // __syncwarp(): every lane of the warp arrives (a warp collective)

// Named barriers (bar.sync / bar.arrive id, threads): threads is a multiple of 32; id 0 is the
// barrier __syncthreads uses.
void named_barrier_sync(int id, int threads);
void named_barrier_arrive(int id, int threads);

// setmaxnreg.{inc,dec}.sync.aligned.u32: checked (24..256, a multiple of 8, uniform across the
// warp; the warps of a warpgroup are not compared), no other effect.
void setmaxnreg(int registers, bool increase);

// wgmma.mma_async.sync.aligned.m64nNk16.f32.{bf16,f16}: D (64 x N fp32, N/2 floats per thread in
// the accumulator fragment layout) = A (64 x 16) * B (16 x N) + (scale_d ? D : 0).
//   ss: A and B from shared memory through matrix descriptors (64-bit: start address >> 4 in bits
//       0-13, leading byte offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, base offset in
//       49-51, swizzle in 62-63: 0 none, 1 128B, 2 64B, 3 32B); trans_a / trans_b are the
//       imm-trans-a / imm-trans-b operands (0: K-major, 1: MN-major).
//   rs: A from registers (the mma.m16n8k16 A fragment of the warp's 16 rows: warp w of the
//       warpgroup holds rows 16w..16w+15), B through a descriptor.
// Each warp's 16 rows are computed by that warp (a warp-collective here; the hardware requires the
// whole warpgroup). Asynchronous as in the PTX memory model: the product is computed, and the
// shared operands read, at random either at commit_group or at the wait_group that retires the
// group; d must not be read before then (reading it early sees the old values).
// Checked: a wgmma.fence before a warp's first wgmma and before the first one after each
// wait_group (the registers are the threads' again then); no warp returns with wgmma groups not
// retired; the warpgroup is whole; descriptors and flags are warp-uniform; base offset 0 only.
void wgmma_fence();
void wgmma_commit_group();
void wgmma_wait_group(int pending);
void wgmma_ss(MmaType type, int n, float* d, std::uint64_t desc_a, std::uint64_t desc_b, bool scale_d,
              bool trans_a, bool trans_b);
void wgmma_rs(MmaType type, int n, float* d, const std::uint32_t (&a)[4], std::uint64_t desc_b, bool scale_d,
              bool trans_b);

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
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) throw std::runtime_error("cuda emulator: only full-warp __syncwarp is emulated");
  llmlab::emu::syncwarp();
}

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
