// Building blocks shared by the flash forward and backward kernels (sm_80+ instructions, used on
// sm_90): the parameter struct, switch helpers that turn runtime flags into template booleans,
// inline-PTX wrappers for mma.sync m16n8k16, ldmatrix and cp.async, the swizzled shared-memory
// tile layout, the host-side checks every launcher repeats, and the pieces the two query-block
// kernels (forward, backward's deterministic dQ) share: the K/V double buffer, the warp-level
// products S = Q K^T and O += P V, the causal / document-end mask.
//
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16", 16-bit A/B, fp32 C); in a warp
// lane l has groupID g = l / 4 and thread-in-group t = l % 4:
//   A (16x16, row-major, 4 x 32-bit regs of 2 halves each, lower column in the low half):
//     a[0] = A[g    ][2t, 2t+1]     a[1] = A[g + 8][2t, 2t+1]
//     a[2] = A[g    ][2t+8, 2t+9]   a[3] = A[g + 8][2t+8, 2t+9]
//   B (16x8, K x N, "col": 2 regs):  b[0] = B[2t, 2t+1][g]   b[1] = B[2t+8, 2t+9][g]
//   C (16x8 fp32, 4 floats):  c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] = C[g + 8][2t, 2t+1]
// ldmatrix.x4 loads four 8x8 16-bit matrices; lanes 8j..8j+7 give the row addresses of matrix
// j (lane 8j+i: row i). Register j of lane l receives matrix j's row l/4, columns 2(l%4),+1;
// with .trans it receives the transpose: stored rows 2(l%4), 2(l%4)+1 of column l/4.
// Consequences used by both kernels (M = a row-major [rows][cols] tile in shared memory):
//   A operand from M (rows = m, cols = k):   lane l points at row l%16, column 8*(l/16)
//   B operand from M (rows = n, cols = k), two n-tiles of 8 (regs 0,1 = n 0..7; 2,3 = n 8..15):
//                                            lane l points at row (l%8) + 8*(l/16), column 8*((l/8)%2)
//   B operand from M^T, i.e. M is (rows = k, cols = n), .trans, two n-tiles:
//                                            lane l points at row (l%8) + 8*((l/8)%2), column 8*(l/16)
//   A operand from M^T (M is rows = k, cols = m), .trans:
//                                            lane l points at row (l%8) + 8*(l/16), column 8*((l/8)%2)
//   C -> A (the probabilities of forward, P^T and dS^T of backward): C n-tiles 2j and 2j+1 of
//   one 16-row tile are A's k-step j: a[0] = pack(C2j[0], C2j[1]), a[1] = pack(C2j[2], C2j[3]),
//   a[2] = pack(C2j+1[0], C2j+1[1]), a[3] = pack(C2j+1[2], C2j+1[3]).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string>

#include "core/error.hpp"
#include "kernels/attention/attention_cuda.hpp"
#include "ops/cuda/kernel_launch.cuh"

namespace llmlab::cuda::flash {

constexpr float kLog2e = 1.4426950408889634f;  // exp(x) = exp2(x * kLog2e)

// ---- parameters ------------------------------------------------------------------------------

// One attention call. Strides are in elements; rows are tokens. Pointers are device pointers.
struct Params {
  const void* __restrict__ q;  // [T, Hq, D]
  const void* __restrict__ k;  // [T, Hkv, D]
  const void* __restrict__ v;  // [T, Hkv, D]
  void* __restrict__ out;      // [T, Hq, D]
  float* __restrict__ lse;     // [Hq, T]
  const void* __restrict__ dout;  // [T, Hq, D]
  void* __restrict__ dq;          // [T, Hq, D]
  void* __restrict__ dk;          // [T, Hkv, D]
  void* __restrict__ dv;          // [T, Hkv, D]
  float* __restrict__ dq_accum;   // [T, Hq, D] fp32, unscaled sum of dS K
  float* __restrict__ drow;       // [Hq, T] rowsum(dO * O)
  const std::int32_t* __restrict__ cu_seqlens;  // docs + 1
  std::int64_t q_row_stride, q_head_stride;    // q, out, dout, dq, dq_accum: Hq * D, D
  std::int64_t kv_row_stride, kv_head_stride;  // k, v, dk, dv: Hkv * D, D
  std::int64_t lse_head_stride;                // lse, drow: T
  std::int64_t tokens;
  int heads, kv_heads, group, head_dim, docs, max_seqlen;
  float scale;       // softmax scale
  float scale_log2;  // scale * log2(e): exp(scale * s) = exp2(scale_log2 * s)
};

inline Params make_params(const AttentionShape& s, const AttentionTensors& t) {
  Params p{};
  p.q = t.q;
  p.k = t.k;
  p.v = t.v;
  p.out = t.out;
  p.lse = t.lse;
  p.dout = t.dout;
  p.dq = t.dq;
  p.dk = t.dk;
  p.dv = t.dv;
  p.cu_seqlens = t.cu_seqlens;
  p.q_row_stride = s.heads * s.head_dim;
  p.q_head_stride = s.head_dim;
  p.kv_row_stride = s.kv_heads * s.head_dim;
  p.kv_head_stride = s.head_dim;
  p.lse_head_stride = s.tokens;
  p.tokens = s.tokens;
  p.heads = static_cast<int>(s.heads);
  p.kv_heads = static_cast<int>(s.kv_heads);
  p.group = static_cast<int>(s.heads / s.kv_heads);
  p.head_dim = static_cast<int>(s.head_dim);
  p.docs = static_cast<int>(s.docs);
  p.max_seqlen = static_cast<int>(s.max_seqlen);
  p.scale = s.scale;
  p.scale_log2 = s.scale * kLog2e;
  return p;
}

// ---- switch helpers (FlashAttention's static_switch.h) ----------------------------------------

#define LLMLAB_BOOL_SWITCH(COND, CONST_NAME, ...) \
  [&] {                                           \
    if (COND) {                                   \
      constexpr static bool CONST_NAME = true;    \
      return __VA_ARGS__();                       \
    } else {                                      \
      constexpr static bool CONST_NAME = false;   \
      return __VA_ARGS__();                       \
    }                                             \
  }()

// Storage::bf16 / fp16 -> elem_type.
#define LLMLAB_STORAGE_SWITCH(STORAGE, ...)                 \
  [&] {                                                     \
    if ((STORAGE) == ::llmlab::cuda::Storage::bf16) {       \
      using elem_type = __nv_bfloat16;                      \
      return __VA_ARGS__();                                 \
    } else {                                                \
      using elem_type = __half;                             \
      return __VA_ARGS__();                                 \
    }                                                       \
  }()

// head_dim 64 / 128 -> kHeadDim (the caller has checked flash_supported).
#define LLMLAB_HEADDIM_SWITCH(HEADDIM, ...) \
  [&] {                                     \
    if ((HEADDIM) <= 64) {                  \
      constexpr static int kHeadDim = 64;   \
      return __VA_ARGS__();                 \
    } else {                                \
      constexpr static int kHeadDim = 128;  \
      return __VA_ARGS__();                 \
    }                                       \
  }()

// A kernel family's entry point: elem_type, kHeadDim and kCausal bound from a launch's storage,
// head dim and mask.
#define LLMLAB_KERNEL_SWITCH(STORAGE, HEADDIM, CAUSAL, ...) \
  LLMLAB_STORAGE_SWITCH(STORAGE, [&] {                      \
    LLMLAB_HEADDIM_SWITCH(HEADDIM, [&] { LLMLAB_BOOL_SWITCH(CAUSAL, kCausal, __VA_ARGS__); }); \
  })

// ---- host checks -----------------------------------------------------------------------------

inline void check_cuda(cudaError_t err, const char* call) {
  if (err != cudaSuccess) throw Error(std::string(call) + " failed: " + cudaGetErrorString(err));
}

// Rows [0, cu[0]) and [cu[docs], T) of a [T, width] tensor of `elem` bytes set to zero.
inline void zero_outside_docs(void* x, const std::int32_t* cu_host, std::int64_t docs, std::int64_t tokens,
                              std::int64_t width, std::size_t elem, cudaStream_t stream, const char* what) {
  const std::int64_t first = docs > 0 ? cu_host[0] : tokens, last = docs > 0 ? cu_host[docs] : tokens;
  auto* bytes = static_cast<char*>(x);
  const auto row = static_cast<std::size_t>(width) * elem;
  if (first > 0) check_cuda(cudaMemsetAsync(bytes, 0, static_cast<std::size_t>(first) * row, stream), what);
  if (last < tokens)
    check_cuda(cudaMemsetAsync(bytes + static_cast<std::size_t>(last) * row, 0,
                               static_cast<std::size_t>(tokens - last) * row, stream),
               what);
}

// lse [H, T]: columns outside every document set to zero (one 2D memset).
inline void zero_lse_outside_docs(float* lse, const std::int32_t* cu_host, std::int64_t docs, std::int64_t tokens,
                                  std::int64_t heads, cudaStream_t stream) {
  const std::int64_t first = docs > 0 ? cu_host[0] : tokens, last = docs > 0 ? cu_host[docs] : tokens;
  const std::size_t pitch = static_cast<std::size_t>(tokens) * sizeof(float);
  const auto h = static_cast<std::size_t>(heads);
  if (first > 0)
    check_cuda(cudaMemset2DAsync(lse, pitch, 0, static_cast<std::size_t>(first) * sizeof(float), h, stream),
               "cudaMemset2DAsync (lse padding)");
  if (last < tokens)
    check_cuda(cudaMemset2DAsync(lse + last, pitch, 0, static_cast<std::size_t>(tokens - last) * sizeof(float), h,
                                 stream),
               "cudaMemset2DAsync (lse padding)");
}

// Validates what every kernel assumes: a sane shape, cu_seqlens increasing within [0, T] with
// no document longer than max_seqlen, 16-byte aligned tensors (cp.async moves 16 bytes).
inline void check_call(const AttentionShape& s, const AttentionTensors& t, const char* who) {
  const std::string name(who);
  if (s.heads <= 0 || s.kv_heads <= 0 || s.heads % s.kv_heads != 0 || s.head_dim <= 0 || s.docs < 0 ||
      s.tokens < 0 || s.max_seqlen < 0 || s.tokens > std::numeric_limits<std::int32_t>::max() ||
      s.heads > 65535 || s.kv_heads > 65535 || s.docs > 65535)  // token indices are int32; grid y, z limits
    throw Error(name + ": bad shape (heads " + std::to_string(s.heads) + ", kv_heads " + std::to_string(s.kv_heads) +
                ", head_dim " + std::to_string(s.head_dim) + ", tokens " + std::to_string(s.tokens) + ")");
  if (s.docs > 0 && (!t.cu_seqlens || !t.cu_seqlens_host)) throw Error(name + ": cu_seqlens is null");
  for (std::int64_t i = 0; i < s.docs; ++i) {
    const std::int64_t a = t.cu_seqlens_host[i], b = t.cu_seqlens_host[i + 1];
    if (a < 0 || b < a || b > s.tokens || b - a > s.max_seqlen)
      throw Error(name + ": cu_seqlens is not increasing within [0, tokens] (or a document exceeds max_seqlen " +
                  std::to_string(s.max_seqlen) + ") at document " + std::to_string(i));
  }
  for (const void* ptr : {t.q, t.k, t.v, static_cast<const void*>(t.out), t.dout, static_cast<const void*>(t.dq),
                          static_cast<const void*>(t.dk), static_cast<const void*>(t.dv)})
    if (reinterpret_cast<std::uintptr_t>(ptr) % 16 != 0) throw Error(name + ": tensors must be 16-byte aligned");
}

// Grid of the query-block kernels (forward, backward's deterministic dQ): one CTA per (query
// block of block_m rows, q head, document), x covering the longest document.
inline dim3 query_block_grid(const Params& p, int block_m) {
  return dim3(static_cast<unsigned>((p.max_seqlen + block_m - 1) / block_m), static_cast<unsigned>(p.heads),
              static_cast<unsigned>(p.docs));
}

// Backward's deterministic dQ (flash_backward_dq.cu): dq = scale * sum over key blocks of dS K,
// written once per element, from q, k, v, dout, lse and p.drow (backward's preprocess must have
// run); rows outside every document are left to the caller. Needs p.docs > 0, p.max_seqlen > 0.
void backward_dq(const Params& p, Storage storage, bool causal, cudaStream_t stream);

// The Hopper forward (flash_forward_sm90.cu): same outputs as the sm_80-class forward, on
// wgmma, TMA and warp specialisation; needs a device of compute capability 9.x, p.docs > 0 and
// p.max_seqlen > 0.
void forward_sm90(const Params& p, Storage storage, bool causal, cudaStream_t stream);

// How the Hopper backward's main kernel produces dQ: not at all (the deterministic mode, whose
// dQ pass follows), or its unscaled sum added to p.dq_accum by fp32 atomics from the MMA
// threads, or by bulk reductions (cp.reduce.async.bulk) of rows the warps stage in shared memory.
enum class DqMode { none, atomics, bulk };

// The Hopper backward's main kernel (flash_backward_sm90.cu), in place of flash_backward.cu's
// key-block kernel: dk, dv written and dQ as `dq` says (the preprocess must have run: p.drow
// filled, p.dq_accum zeroed); same device and p.docs, p.max_seqlen needs as forward_sm90.
void backward_sm90(const Params& p, Storage storage, bool causal, DqMode dq, cudaStream_t stream);

// The Hopper deterministic dQ (flash_backward_dq_sm90.cu): backward_dq's contract on wgmma and
// TMA; needs what forward_sm90 needs.
void backward_dq_sm90(const Params& p, Storage storage, bool causal, cudaStream_t stream);

// ---- device helpers --------------------------------------------------------------------------

template <typename T>
struct Mma;

// C += A B for one 16x8x16 tile, fp32 accumulation.
#ifdef LLMLAB_CUDA_EMULATION
// The emulated build (tests/cuda_emulation) runs these instructions on the CPU emulator.
template <>
struct Mma<__nv_bfloat16> {
  static void run(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
    emu::mma_m16n8k16(emu::MmaType::bf16, c, a, b0, b1);
  }
};
template <>
struct Mma<__half> {
  static void run(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
    emu::mma_m16n8k16(emu::MmaType::fp16, c, a, b0, b1);
  }
};
#else
template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                             std::uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <>
struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                             std::uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
#endif

// Two floats as one 32-bit register of two 16-bit values, `lo` in the low half.
template <typename T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ std::uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&v);
}
template <>
__device__ __forceinline__ std::uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&v);
}

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// The block's dynamic shared memory (the launch's shared_bytes).
__device__ __forceinline__ unsigned char* dynamic_smem() {
#ifdef LLMLAB_CUDA_EMULATION
  return emu::dynamic_shared_memory();
#else
  extern __shared__ __align__(128) unsigned char smem_raw[];
  return smem_raw;
#endif
}

#ifdef LLMLAB_CUDA_EMULATION
inline std::uint32_t smem_u32(const void* p) { return emu::shared_address(p); }
inline void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) { emu::ldmatrix_x4(r, addr, false); }
inline void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t addr) { emu::ldmatrix_x4(r, addr, true); }
inline void cp_async_16(std::uint32_t dst, const void* src, bool valid) { emu::cp_async_16(dst, src, valid); }
inline void cp_async_commit() { emu::cp_async_commit(); }
template <int N>
void cp_async_wait() {
  emu::cp_async_wait(N);
}
#else
__device__ __forceinline__ std::uint32_t smem_u32(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16 bytes global -> shared, bypassing L1; when !valid the 16 bytes are zero-filled (src-size 0,
// nothing is read, but the address must still be a valid one: callers pass the tile's base).
__device__ __forceinline__ void cp_async_16(std::uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
#endif

// Swizzled [rows][kCols] tile of 16-bit elements: the 16-byte chunk c of row r is stored at
// chunk c ^ f(r), so that the 8 row addresses of one ldmatrix matrix (8 consecutive rows, same
// chunk) hit 8 different 16-byte bank groups. Rows of 128 bytes or more (kCols >= 64): f(r) =
// r % 8. Rows of 64 bytes (kCols = 32, two rows per 128-byte bank line): f(r) = (r / 2) % 4,
// which makes rows r and r + 2, r + 4, r + 6 (same bank half) use different chunks.
template <int kCols>
__device__ __forceinline__ int swizzle(int row, int col) {
  static_assert(kCols == 32 || kCols % 64 == 0, "tile width");
  constexpr int kChunks = kCols / 8;
  const int f = kChunks >= 8 ? (row & 7) : ((row >> 1) & 3);
  return row * kCols + (((col >> 3) ^ f) << 3) + (col & 7);
}

// Per-lane offsets of one ldmatrix address pattern into a swizzled [rows][kCols] tile, so that
// every address of an unrolled loop is one of kSw/2 registers plus a compile-time constant
// (computing swizzle() per load made ptxas hoist one register per address and spill). The lane
// points at row row0 + lane_row and chunk chunk0 + lane_chunk, where row0 is a multiple of 8
// (so row % 8 = lane_row % 8) and chunk0 has no bit in common with lane_chunk (then the sum is
// an XOR and the swizzle of chunk0's low bits is one of off[]):
//   (lane_chunk + chunk0) ^ f = ((lane_chunk ^ f) ^ (chunk0 % kSw)) + (chunk0 - chunk0 % kSw).
template <int kCols>
struct LdsmLane {
  static constexpr int kChunks = kCols / 8, kSw = kChunks >= 8 ? 8 : 4;  // XOR range of the swizzle
  int off[kSw / 2];
  __device__ __forceinline__ LdsmLane(int lane_row, int lane_chunk) {
    const int f = kChunks >= 8 ? (lane_row & 7) : ((lane_row >> 1) & 3);
#pragma unroll
    for (int i = 0; i < kSw / 2; ++i) off[i] = lane_row * kCols + (((lane_chunk ^ f) ^ (2 * i)) << 3);
  }
  // Element offset of this lane's address for block row row0 and chunk chunk0 (both
  // compile-time after unrolling, chunk0 even).
  __device__ __forceinline__ int at(int row0, int chunk0) const {
    return row0 * kCols + ((chunk0 & ~(kSw - 1)) << 3) + off[(chunk0 & (kSw - 1)) >> 1];
  }
};

// Loads rows [0, kRows) of a [kRows][kCols] tile whose row r is at src + r * row_stride (only
// rows < valid_rows are read; the others are zero-filled) into the swizzled tile at smem.
// Thread tid moves chunk tid % kChunks of rows tid / kChunks + i * kRowsPerPass: kRowsPerPass is
// a multiple of 8, so the swizzle of every pass is that of the first plus a constant.
template <int kRows, int kCols, int kThreads, typename T>
__device__ __forceinline__ void load_tile_async(T* smem, const T* src, std::int64_t row_stride, int valid_rows) {
  constexpr int kChunks = kCols / 8, kRowsPerPass = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && kRowsPerPass % 8 == 0 && kRows % kRowsPerPass == 0, "tile passes");
  const int tid = static_cast<int>(threadIdx.x);
  const int row = tid / kChunks, col = (tid % kChunks) * 8;
  const std::uint32_t dst = smem_u32(smem + swizzle<kCols>(row, col));
#pragma unroll
  for (int i = 0; i < kRows / kRowsPerPass; ++i) {
    const int r = row + i * kRowsPerPass;
    const bool valid = r < valid_rows;
    const T* g = valid ? src + r * row_stride + col : src;
    cp_async_16(dst + static_cast<std::uint32_t>(i * kRowsPerPass * kCols * 2), g, valid);
  }
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// ---- pieces of the query-block kernels (forward, and backward's deterministic dQ) -------------
// Both run one CTA per (query block, q head, document), each warp owning kMTiles 16-row tiles of
// the block's queries, and stream the document's key blocks through a K/V double buffer.

// Key blocks of kBlockN that query rows [qb, qb + kBlockM) of a document of len tokens see: all
// of them, or (causal) those starting at or before the block's last row. >= 1 when qb < len.
template <int kBlockM, int kBlockN, bool kCausal>
__device__ __forceinline__ int visible_key_blocks(int qb, int len) {
  const int key_end = kCausal ? min(len, qb + kBlockM) : len;  // keys past it are masked for every row
  return (key_end + kBlockN - 1) / kBlockN;
}

// Queues K and V rows [kb, kb + kBlockN) of a document (kg, vg: its row 0; rows past len are
// zero-filled) into the [kBlockN][D] tiles sK, sV.
template <int kBlockN, int D, int kThreads, typename T>
__device__ __forceinline__ void load_kv_async(T* sK, T* sV, const T* kg, const T* vg, std::int64_t row_stride,
                                              int kb, int len) {
  load_tile_async<kBlockN, D, kThreads>(sK, kg + kb * row_stride, row_stride, len - kb);
  load_tile_async<kBlockN, D, kThreads>(sV, vg + kb * row_stride, row_stride, len - kb);
}

// Start of key block j of n_blocks in a K/V double buffer (block j in buffer j % 2 of sK, sV,
// each [2][kBlockN][D]; block 0 and everything before it committed by the caller): prefetches
// block j + 1 into the other buffer, last read in block j - 1 (the caller ends every block with a
// barrier), then waits for block j and what was committed with or before it, and makes it
// visible to the whole CTA.
template <int kBlockN, int D, int kThreads, typename T>
__device__ __forceinline__ void begin_kv_block(T* sK, T* sV, const T* kg, const T* vg, std::int64_t row_stride,
                                               int len, int j, int n_blocks) {
  if (j + 1 < n_blocks) {
    const int next = (j + 1) & 1;
    load_kv_async<kBlockN, D, kThreads>(sK + next * kBlockN * D, sV + next * kBlockN * D, kg, vg, row_stride,
                                        (j + 1) * kBlockN, len);
    cp_async_commit();
    cp_async_wait<1>();  // everything but the prefetch
  } else {
    cp_async_wait<0>();
  }
  __syncthreads();
}

// C = A B^T for one warp's kMTiles row tiles: A is [16 kMTiles][16 kKSteps], load_a(a, mi, ks)
// gives its A fragments (from registers or shared memory); B^T is a swizzled [n][k] tile (K or V
// as [key][d]) at bt_tile, bt_lane its B-operand lane pattern (header comment: row (l%8) +
// 8(l/16), chunk (l/8)%2). ldmatrix registers 0,1 are n np*16 + 0..7, registers 2,3 np*16 + 8..15.
template <typename T, int kKSteps, int kMTiles, int kNTiles, int kCols, typename LoadA>
__device__ __forceinline__ void warp_mma_abt(float (&c)[kMTiles][kNTiles][4], const LoadA& load_a,
                                             std::uint32_t bt_tile, const LdsmLane<kCols>& bt_lane) {
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int nj = 0; nj < kNTiles; ++nj)
#pragma unroll
      for (int e = 0; e < 4; ++e) c[mi][nj][e] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks) {
    std::uint32_t a[kMTiles][4];
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi) load_a(a[mi], mi, ks);
#pragma unroll
    for (int np = 0; np < kNTiles / 2; ++np) {
      std::uint32_t b[4];
      ldmatrix_x4(b, bt_tile + 2 * bt_lane.at(np * 16, 2 * ks));
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi) {
        Mma<T>::run(c[mi][2 * np], a[mi], b[0], b[1]);
        Mma<T>::run(c[mi][2 * np + 1], a[mi], b[2], b[3]);
      }
    }
  }
}

// O += X B for one warp's kMTiles row tiles, X given as fp32 C fragments [16 kMTiles][8 kXTiles]
// (forward's P, backward's dS) rounded to T as A fragments (C n-tiles 2ks, 2ks + 1 make k-step
// ks); B is a swizzled [k][n] tile (V or K as [key][d]) at b_tile read with .trans, b_lane its
// lane pattern (row (l%8) + 8((l/8)%2), chunk l/16); registers 0,1 are n dp*16 + 0..7, 2,3 + 8..15.
template <typename T, int kMTiles, int kXTiles, int kOTiles, int kCols>
__device__ __forceinline__ void warp_mma_cb(float (&o)[kMTiles][kOTiles][4], const float (&x)[kMTiles][kXTiles][4],
                                            std::uint32_t b_tile, const LdsmLane<kCols>& b_lane) {
#pragma unroll
  for (int ks = 0; ks < kXTiles / 2; ++ks) {
    std::uint32_t a[kMTiles][4];
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi) {
      a[mi][0] = pack2<T>(x[mi][2 * ks][0], x[mi][2 * ks][1]);
      a[mi][1] = pack2<T>(x[mi][2 * ks][2], x[mi][2 * ks][3]);
      a[mi][2] = pack2<T>(x[mi][2 * ks + 1][0], x[mi][2 * ks + 1][1]);
      a[mi][3] = pack2<T>(x[mi][2 * ks + 1][2], x[mi][2 * ks + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < kOTiles / 2; ++dp) {
      std::uint32_t b[4];
      ldmatrix_x4_trans(b, b_tile + 2 * b_lane.at(ks * 16, 2 * dp));
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi) {
        Mma<T>::run(o[mi][2 * dp], a[mi], b[0], b[1]);
        Mma<T>::run(o[mi][2 * dp + 1], a[mi], b[2], b[3]);
      }
    }
  }
}

// Scores of keys past the document's end and (causal) after the query set to -inf, so that
// exp2 makes them 0: s[mi][nj][e] is query row row0 + 16 mi + g + 8 (e / 2), key kb + 8 nj +
// 2 t4 + e % 2 (both within the document). Blocks that need no mask skip the loop.
template <bool kCausal, int kMTiles, int kNTiles>
__device__ __forceinline__ void mask_scores(float (&s)[kMTiles][kNTiles][4], int row0, int kb, int len, int g,
                                            int t4) {
  constexpr int kBlockN = kNTiles * 8;
  if (kb + kBlockN > len || (kCausal && kb + kBlockN - 1 > row0)) {
#pragma unroll
    for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
      for (int nj = 0; nj < kNTiles; ++nj)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = row0 + mi * 16 + g + 8 * (e / 2), key = kb + nj * 8 + 2 * t4 + e % 2;
          if (key >= len || (kCausal && key > row)) s[mi][nj][e] = -INFINITY;
        }
  }
}

// One online-softmax step of a 16-row tile's scores s (kNTiles C fragments of one key block, masked
// scores -inf): per row half rh (row g, g + 8) the new max over the quad, s turned into
// probabilities exp2(scale_log2 (s - max)), the running sum rescaled and added to, and alpha[rh]
// the factor the output accumulated so far must be rescaled by. Shared by both forward kernels.
template <int kNTiles>
__device__ __forceinline__ void online_softmax(float (&s)[kNTiles][4], float (&row_max)[2], float (&row_sum)[2],
                                               float scale_log2, float (&alpha)[2]) {
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    float mx = row_max[rh];
#pragma unroll
    for (int nj = 0; nj < kNTiles; ++nj) mx = fmaxf(mx, fmaxf(s[nj][2 * rh], s[nj][2 * rh + 1]));
    mx = quad_max(mx);
    // A row with every score so far masked keeps max -inf: subtract 0 instead (no inf - inf).
    const float m_scaled = mx == -INFINITY ? 0.0f : mx * scale_log2;
    alpha[rh] = exp2f(row_max[rh] * scale_log2 - m_scaled);  // 0 when the old max is -inf
    row_max[rh] = mx;
    float sum = 0.0f;
#pragma unroll
    for (int nj = 0; nj < kNTiles; ++nj)
#pragma unroll
      for (int e = 2 * rh; e < 2 * rh + 2; ++e) {
        const float pr = exp2f(fmaf(s[nj][e], scale_log2, -m_scaled));  // masked: exp2(-inf) = 0
        s[nj][e] = pr;
        sum += pr;
      }
    row_sum[rh] = row_sum[rh] * alpha[rh] + sum;
  }
}

// The key-block backward kernels' epilogue (sm80 and sm90): dK = scale * dk and dV = dv for one
// warp's 16 keys, in the storage type. dk, dv hold kDTiles n-tiles of the accumulator fragment
// (element 4 j + e: key row g + 8 (e / 2), column 8 j + 2 t4 + e % 2); first_key is the warp's
// first key as a token index, valid_keys how many of its 16 lie inside the document.
template <typename T, int kDTiles>
__device__ __forceinline__ void store_key_gradients(const Params& p, std::int64_t first_key, int kvh, int valid_keys,
                                                    const float* dk, const float* dv, int g, int t4) {
  const std::int64_t base = first_key * p.kv_row_stride + kvh * p.kv_head_stride;
  T* dkg = static_cast<T*>(p.dk) + base;
  T* dvg = static_cast<T*>(p.dv) + base;
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    const int row = g + 8 * rh;
    if (row < valid_keys) {
      const std::int64_t off = static_cast<std::int64_t>(row) * p.kv_row_stride + 2 * t4;
#pragma unroll
      for (int j = 0; j < kDTiles; ++j) {
        *reinterpret_cast<std::uint32_t*>(dkg + off + 8 * j) =
            pack2<T>(dk[4 * j + 2 * rh] * p.scale, dk[4 * j + 2 * rh + 1] * p.scale);
        *reinterpret_cast<std::uint32_t*>(dvg + off + 8 * j) = pack2<T>(dv[4 * j + 2 * rh], dv[4 * j + 2 * rh + 1]);
      }
    }
  }
}

}  // namespace llmlab::cuda::flash
