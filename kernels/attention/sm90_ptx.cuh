// Hopper (sm_90) instructions as inline-PTX wrappers: mbarrier, TMA tensor loads, bulk
// reductions into global memory, named barriers, setmaxnreg and warpgroup MMA (wgmma) with its
// shared-memory matrix descriptors.
// Each has an emulated twin (tests/cuda_emulation, LLMLAB_CUDA_EMULATION) with the same
// signature, so the sm_90 kernels' sources are tested on machines without a GPU.
//
// Shared-memory operands of wgmma (PTX ISA, "Matrix Descriptor Format" and the canonical
// layouts of "Asynchronous Warpgroup Level Matrix Shared Memory Layout"), as the TMA writes them
// with CU_TENSOR_MAP_SWIZZLE_128B: a tile is stored as atoms of 8 rows x 128 bytes (64 16-bit
// elements), rows 128 bytes apart, and within each 1024-byte atom the 16-byte chunk index (address
// bits 4-6) is XORed with the row index (bits 7-9). A tile wider than 64 elements is stored as
// column panels of 64, one after another (what a TMA box of 64 columns per load gives).
//   K-major operand (A = Q, B = K: the k dimension, d, is contiguous): a 16-wide k slice of
//     64 (A) or N (B) rows starts at panel + row0 * 128 + 2 * (k % 64) bytes; row groups of 8 are
//     SBO = 1024 bytes apart; LBO is unused with a swizzle. Stepping k inside a panel adds 32
//     bytes to the start address: the hardware swizzles the computed address, which is why the
//     atoms must be 1024-byte aligned.
//   MN-major operand (B = V for O += P V: k = key rows, n = d contiguous; imm-trans-b = 1): 8
//     k rows x 64 n elements per atom; k groups of 8 rows SBO = 1024 bytes apart; n panels of 64
//     LBO bytes apart (the panel size).
//   MN-major A operand (imm-trans-a = 1, 16-bit types only; the backward's dS for dQ = dS K from
//     a [key][query] tile: k = key rows, m = queries contiguous): the same layout with m for n.
//     A 64-wide m (or a 32-wide n at a 64-byte offset inside a panel) stays in one panel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace llmlab::cuda::sm90 {

// 64-bit wgmma matrix descriptor for a 128B-swizzled operand at shared address `addr`.
__host__ __device__ __forceinline__ std::uint64_t make_desc_sw128(std::uint32_t addr, std::uint32_t lbo_bytes,
                                                                  std::uint32_t sbo_bytes) {
  return (static_cast<std::uint64_t>((addr >> 4) & 0x3fff)) |
         (static_cast<std::uint64_t>((lbo_bytes >> 4) & 0x3fff) << 16) |
         (static_cast<std::uint64_t>((sbo_bytes >> 4) & 0x3fff) << 32) | (std::uint64_t{1} << 62);
}

#ifdef LLMLAB_CUDA_EMULATION

inline void mbarrier_init(std::uint32_t bar, std::uint32_t arrivals) { emu::mbarrier_init(bar, arrivals); }
inline void mbarrier_arrive(std::uint32_t bar) { emu::mbarrier_arrive(bar); }
inline void mbarrier_arrive_expect_tx(std::uint32_t bar, std::uint32_t bytes) {
  emu::mbarrier_arrive_expect_tx(bar, bytes);
}
inline bool mbarrier_try_wait_parity(std::uint32_t bar, std::uint32_t parity) {
  return emu::mbarrier_try_wait_parity(bar, parity);
}
inline void fence_barrier_init() { emu::fence_barrier_init(); }
inline void fence_proxy_async() { emu::fence_proxy_async(); }
inline void st_shared_u32(std::uint32_t addr, std::uint32_t v) { emu::st_shared(addr, &v, 4); }
inline void st_shared_f32x2(std::uint32_t addr, float x, float y) {
  const float v[2] = {x, y};
  emu::st_shared(addr, v, 8);
}
inline void tma_load_3d(std::uint32_t dst, const void* map, int c0, int c1, int c2, std::uint32_t bar) {
  const int coords[3] = {c0, c1, c2};
  emu::tma_load(dst, map, coords, 3, bar);
}
inline void prefetch_tensormap(const void* map) { emu::prefetch_tensormap(map); }
inline void bulk_reduce_add_f32(float* dst, std::uint32_t src, std::uint32_t bytes) {
  emu::bulk_reduce_add_f32(dst, src, bytes);
}
inline void bulk_commit() { emu::bulk_commit_group(); }
template <int N>
void bulk_wait_read() {
  emu::bulk_wait_group_read(N);
}
inline void named_barrier_sync(int id, int threads) { emu::named_barrier_sync(id, threads); }
inline void named_barrier_arrive(int id, int threads) { emu::named_barrier_arrive(id, threads); }
template <int kRegs>
void setmaxnreg_inc() {
  emu::setmaxnreg(kRegs, true);
}
template <int kRegs>
void setmaxnreg_dec() {
  emu::setmaxnreg(kRegs, false);
}
inline void wgmma_fence() { emu::wgmma_fence(); }
inline void wgmma_commit() { emu::wgmma_commit_group(); }
template <int N>
void wgmma_wait() {
  emu::wgmma_wait_group(N);
}
template <typename T>
constexpr emu::MmaType wgmma_type() {
  return std::is_same_v<T, __half> ? emu::MmaType::fp16 : emu::MmaType::bf16;
}
template <typename T, int N>
struct Wgmma {
  template <int kTransB, int kTransA = 0>
  static void ss(float (&d)[N / 2], std::uint64_t desc_a, std::uint64_t desc_b, int scale_d) {
    emu::wgmma_ss(wgmma_type<T>(), N, d, desc_a, desc_b, scale_d != 0, kTransA != 0, kTransB != 0);
  }
  template <int kTransB>
  static void rs(float (&d)[N / 2], const std::uint32_t (&a)[4], std::uint64_t desc_b, int scale_d) {
    emu::wgmma_rs(wgmma_type<T>(), N, d, a, desc_b, scale_d != 0, kTransB != 0);
  }
};
// Registers the compiler must not move across the asynchronous MMAs: nothing to do here.
template <int N>
void fence_operands(float (&)[N]) {}
template <int N, int M>
void fence_operands(std::uint32_t (&)[N][M]) {}

#else

__device__ __forceinline__ void mbarrier_init(std::uint32_t bar, std::uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive(std::uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive_expect_tx(std::uint32_t bar, std::uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ bool mbarrier_try_wait_parity(std::uint32_t bar, std::uint32_t parity) {
  std::uint32_t done;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
  return done != 0;
}
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Shared-memory stores (generic proxy) of data the async proxy reads next (wgmma operands, bulk
// copies): the writing thread fences (fence_proxy_async) before the barrier that hands them over.
__device__ __forceinline__ void st_shared_u32(std::uint32_t addr, std::uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ void st_shared_f32x2(std::uint32_t addr, float x, float y) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(x), "f"(y) : "memory");
}
// Box of the tensor map at coordinates (c0 innermost, c1, c2) into shared memory at dst; the
// bytes are counted against bar's transaction count as they land.
__device__ __forceinline__ void tma_load_3d(std::uint32_t dst, const void* map, int c0, int c1, int c2,
                                            std::uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
__device__ __forceinline__ void prefetch_tensormap(const void* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}
// global fp32 [dst, dst + bytes) += shared [src, src + bytes), asynchronously (both 16-byte
// aligned, bytes a multiple of 16). The thread's bulk operations since its last bulk_commit form
// a bulk group; bulk_wait_read<N> returns once at most N of its groups may still read their
// shared source, which may be overwritten then (and must be waited for before the CTA exits).
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, std::uint32_t src, std::uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving reads or writes of accumulator registers across the
// asynchronous MMAs that own them (CUTLASS's warpgroup_fence_operand).
template <int N>
__device__ __forceinline__ void fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
// The same for A fragments in registers (wgmma rs): kept alive, unmoved, until the MMAs that
// read them are retired.
template <int N, int M>
__device__ __forceinline__ void fence_operands(std::uint32_t (&a)[N][M]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int j = 0; j < M; ++j) asm volatile("" : "+r"(a[i][j])::"memory");
}

// The operands of each accumulator size R = N/2 (PTX numbers outputs first, so every index
// after the accumulators depends on R): the accumulator list, the bindings of d, and the SS
// and RS operand strings (A descriptor or registers, B descriptor, scale-d predicate,
// immediates) with the index of scale_d.
#define LLMLAB_WGMMA_D_16 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define LLMLAB_WGMMA_D_OPERANDS_16 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define LLMLAB_WGMMA_SS_16 "%16, %17, p, 1, 1, %19, %20"
#define LLMLAB_WGMMA_SS_SCALE_16 "%18"
#define LLMLAB_WGMMA_RS_16 "{%16, %17, %18, %19}, %20, p, 1, 1, %22"
#define LLMLAB_WGMMA_RS_SCALE_16 "%21"
#define LLMLAB_WGMMA_D_32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define LLMLAB_WGMMA_D_OPERANDS_32 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define LLMLAB_WGMMA_SS_32 "%32, %33, p, 1, 1, %35, %36"
#define LLMLAB_WGMMA_SS_SCALE_32 "%34"
#define LLMLAB_WGMMA_RS_32 "{%32, %33, %34, %35}, %36, p, 1, 1, %38"
#define LLMLAB_WGMMA_RS_SCALE_32 "%37"
#define LLMLAB_WGMMA_D_64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define LLMLAB_WGMMA_D_OPERANDS_64 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define LLMLAB_WGMMA_SS_64 "%64, %65, p, 1, 1, %67, %68"
#define LLMLAB_WGMMA_SS_SCALE_64 "%66"
#define LLMLAB_WGMMA_RS_64 "{%64, %65, %66, %67}, %68, p, 1, 1, %70"
#define LLMLAB_WGMMA_RS_SCALE_64 "%69"

// wgmma.mma_async m64nNk16, fp32 accumulators d (the N/2 per thread of the accumulator fragment),
// scale_d = 0: d = A B, else d += A B. ss: A and B through descriptors (kTransA = 0: A K-major,
// 1: MN-major, e.g. dS from a [key][query] tile for dQ = dS K); rs: A from registers (the
// mma.m16n8k16 A fragment of the warp's 16 rows). kTransB as kTransA for B. N = 32 serves the
// backward's dQ at D = 64 (32 columns per consumer warpgroup). One definition per (storage
// type, N), written once: the types differ only in PTX's name for them.
template <typename T, int N>
struct Wgmma;
#define LLMLAB_DEFINE_WGMMA(T, PTX_TYPE, N, R)                                                                   \
  template <>                                                                                                    \
  struct Wgmma<T, N> {                                                                                           \
    template <int kTransB, int kTransA = 0>                                                                      \
    static __device__ __forceinline__ void ss(float (&d)[R], std::uint64_t desc_a, std::uint64_t desc_b,         \
                                              int scale_d) {                                                     \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " LLMLAB_WGMMA_SS_SCALE_##R ", 0;\n"                       \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX_TYPE "." PTX_TYPE " " LLMLAB_WGMMA_D_##R \
                   ", " LLMLAB_WGMMA_SS_##R ";\n}\n"                                                             \
                   : LLMLAB_WGMMA_D_OPERANDS_##R                                                                 \
                   : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransA), "n"(kTransB));                        \
    }                                                                                                            \
    template <int kTransB>                                                                                       \
    static __device__ __forceinline__ void rs(float (&d)[R], const std::uint32_t (&a)[4], std::uint64_t desc_b,  \
                                              int scale_d) {                                                     \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " LLMLAB_WGMMA_RS_SCALE_##R ", 0;\n"                       \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX_TYPE "." PTX_TYPE " " LLMLAB_WGMMA_D_##R \
                   ", " LLMLAB_WGMMA_RS_##R ";\n}\n"                                                             \
                   : LLMLAB_WGMMA_D_OPERANDS_##R                                                                 \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(kTransB));      \
    }                                                                                                            \
  };
LLMLAB_DEFINE_WGMMA(__nv_bfloat16, "bf16", 32, 16)
LLMLAB_DEFINE_WGMMA(__half, "f16", 32, 16)
LLMLAB_DEFINE_WGMMA(__nv_bfloat16, "bf16", 64, 32)
LLMLAB_DEFINE_WGMMA(__half, "f16", 64, 32)
LLMLAB_DEFINE_WGMMA(__nv_bfloat16, "bf16", 128, 64)
LLMLAB_DEFINE_WGMMA(__half, "f16", 128, 64)
#undef LLMLAB_DEFINE_WGMMA
#undef LLMLAB_WGMMA_D_16
#undef LLMLAB_WGMMA_D_OPERANDS_16
#undef LLMLAB_WGMMA_SS_16
#undef LLMLAB_WGMMA_SS_SCALE_16
#undef LLMLAB_WGMMA_RS_16
#undef LLMLAB_WGMMA_RS_SCALE_16
#undef LLMLAB_WGMMA_D_32
#undef LLMLAB_WGMMA_D_OPERANDS_32
#undef LLMLAB_WGMMA_SS_32
#undef LLMLAB_WGMMA_SS_SCALE_32
#undef LLMLAB_WGMMA_RS_32
#undef LLMLAB_WGMMA_RS_SCALE_32
#undef LLMLAB_WGMMA_D_64
#undef LLMLAB_WGMMA_D_OPERANDS_64
#undef LLMLAB_WGMMA_SS_64
#undef LLMLAB_WGMMA_SS_SCALE_64
#undef LLMLAB_WGMMA_RS_64
#undef LLMLAB_WGMMA_RS_SCALE_64

#endif

}  // namespace llmlab::cuda::sm90
