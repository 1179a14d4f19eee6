// Vector building blocks of the CPU attention kernels (ops/cpu/attention.cpp only): a
// 16-float vector type, a vectorised exp, and the register-blocked micro-kernels the flash
// tiles are made of. GCC vector extensions rather than intrinsics, so one source compiles to
// every target_clones variant: a V16 is one AVX-512 register, two AVX2 or four SSE ones.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>

// Every function here is inlined into a cloned kernel, so the "vector argument changes the
// ABI" warning (a V16 passed without AVX-512 enabled) can never apply.
#pragma GCC diagnostic ignored "-Wpsabi"

// Hot kernels are compiled once per x86-64 level and picked at load time (ifunc); elsewhere
// (non-x86) they compile once for the baseline.
#if defined(__x86_64__) && !defined(__clang__)
#define LLMLAB_ATTN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LLMLAB_ATTN_CLONES
#endif
// Helpers must be inlined into the cloned caller to run with its instruction set.
#define LLMLAB_ATTN_INLINE [[gnu::always_inline]] inline

namespace llmlab::attn {
namespace {

typedef float V16 __attribute__((vector_size(64)));
typedef std::int32_t I16 __attribute__((vector_size(64)));
constexpr int kLanes = 16;
constexpr float kInf = std::numeric_limits<float>::infinity();

LLMLAB_ATTN_INLINE V16 load(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}
LLMLAB_ATTN_INLINE void store(float* p, const V16& v) { std::memcpy(p, &v, sizeof v); }
LLMLAB_ATTN_INLINE V16 splat(float x) { return V16{} + x; }
LLMLAB_ATTN_INLINE V16 vmax(const V16& a, const V16& b) { return a > b ? a : b; }

// exp(x) per lane, within 2 ulp of expf for x >= -87.3 and exactly 0 below (softmax feeds it
// x - max <= 0, with -inf for masked scores). Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2,
// and Cephes' degree-6 polynomial for exp(r); 2^n is built in the exponent bits.
LLMLAB_ATTN_INLINE V16 vexp(const V16& x) {
  constexpr float lo = -87.3365f, hi = 88.0f;    // exp(lo) is FLT_MIN: 2^n stays normal
  constexpr float round_magic = 12582912.0f;     // 1.5 * 2^23: adding it rounds to an integer
  const V16 xc = vmax(x, splat(lo)) > splat(hi) ? splat(hi) : vmax(x, splat(lo));
  const V16 n = (xc * 1.44269504088896341f + round_magic) - round_magic;
  const V16 r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 split high + low
  V16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const I16 bits = (__builtin_convertvector(n, I16) + 127) << 23;
  const V16 result = p * std::bit_cast<V16>(bits);
  return x < splat(lo) ? splat(0.0f) : result;
}

// x[i] = exp(x[i] - shift) for i < n, whole vectors plus one padded tail vector.
LLMLAB_ATTN_INLINE void exp_shifted(float* x, std::int64_t n, float shift) {
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(x + i, vexp(load(x + i) - shift));
  if (i == n) return;
  float tail[kLanes] = {};
  std::memcpy(tail, x + i, static_cast<std::size_t>(n - i) * sizeof(float));
  store(tail, vexp(load(tail) - shift));
  std::memcpy(x + i, tail, static_cast<std::size_t>(n - i) * sizeof(float));
}

LLMLAB_ATTN_INLINE float dot(const float* a, const float* b, std::int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (std::int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// y[0, n) += alpha * x[0, n)
LLMLAB_ATTN_INLINE void axpy(float* y, float alpha, const float* x, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// --- score tiles: S^T [nc, W] = Y [nc, D] Z^T, with Z^T packed [D, W] -------------------------
// The W query rows of a tile are the vector lanes, so the softmax over keys is lane-wise.

// One register block: CB rows of Y (stride ldy) against all W lanes.
template <int W, int CB>
LLMLAB_ATTN_INLINE void scores_block(const float* y, std::int64_t ldy, const float* zt, std::int64_t D, float* st) {
  constexpr int NV = W / kLanes;
  V16 acc[CB][NV] = {};
  for (std::int64_t d = 0; d < D; ++d) {
    V16 z[NV];
    for (int v = 0; v < NV; ++v) z[v] = load(zt + d * W + v * kLanes);
    for (int c = 0; c < CB; ++c) {
      const float yc = y[c * ldy + d];
      for (int v = 0; v < NV; ++v) acc[c][v] += yc * z[v];
    }
  }
  for (int c = 0; c < CB; ++c)
    for (int v = 0; v < NV; ++v) store(st + c * W + v * kLanes, acc[c][v]);
}

template <int W>
LLMLAB_ATTN_INLINE void scores_tile(const float* y, std::int64_t ldy, std::int64_t nc, const float* zt, std::int64_t D,
                                    float* st) {
  // 16 accumulators (half the AVX-512 register file) leave room for the Z^T row and broadcasts.
  constexpr int CB = W >= 64 ? 4 : 16 * kLanes / W;
  std::int64_t c = 0;
  for (; c + CB <= nc; c += CB) scores_block<W, CB>(y + c * ldy, ldy, zt, D, st + c * W);
  for (; c < nc; ++c) scores_block<W, 1>(y + c * ldy, ldy, zt, D, st + c * W);
}

// --- row accumulation: out[i, :D] += sum_k coef[i*si + k*sk] * in[k, :D] ------------------------
// All of P V, dP^T dO, dS^T Q and dS K: rows of `in` (stride ldi) scaled by a coefficient tile
// read either way round (si, sk), accumulated into rows of `out` (stride ldo).

// One register block: IB output rows, columns [j, j + 16 NV).
template <int IB, int NV>
LLMLAB_ATTN_INLINE void rows_block(const float* coef, std::int64_t si, std::int64_t sk, std::int64_t nk,
                                   const float* in, std::int64_t ldi, float* out, std::int64_t ldo) {
  V16 acc[IB][NV];
  for (int i = 0; i < IB; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = load(out + i * ldo + v * kLanes);
  for (std::int64_t k = 0; k < nk; ++k) {
    V16 x[NV];
    for (int v = 0; v < NV; ++v) x[v] = load(in + k * ldi + v * kLanes);
    for (int i = 0; i < IB; ++i) {
      const float a = coef[i * si + k * sk];
      for (int v = 0; v < NV; ++v) acc[i][v] += a * x[v];
    }
  }
  for (int i = 0; i < IB; ++i)
    for (int v = 0; v < NV; ++v) store(out + i * ldo + v * kLanes, acc[i][v]);
}

// All ni output rows for the column chunk [j, j + 16 NV).
template <int NV>
LLMLAB_ATTN_INLINE void rows_chunk(const float* coef, std::int64_t si, std::int64_t sk, std::int64_t ni,
                                   std::int64_t nk, const float* in, std::int64_t ldi, float* out,
                                   std::int64_t ldo) {
  constexpr int IB = NV >= 4 ? 4 : 8;  // 16 accumulators for D >= 64, 8 for a 16-column chunk
  std::int64_t i = 0;
  for (; i + IB <= ni; i += IB) rows_block<IB, NV>(coef + i * si, si, sk, nk, in, ldi, out + i * ldo, ldo);
  for (; i < ni; ++i) rows_block<1, NV>(coef + i * si, si, sk, nk, in, ldi, out + i * ldo, ldo);
}

LLMLAB_ATTN_INLINE void accumulate_rows(const float* coef, std::int64_t si, std::int64_t sk, std::int64_t ni,
                                        std::int64_t nk, const float* in, std::int64_t ldi, float* out,
                                        std::int64_t ldo, std::int64_t D) {
  std::int64_t j = 0;
  for (; j + 4 * kLanes <= D; j += 4 * kLanes) rows_chunk<4>(coef, si, sk, ni, nk, in + j, ldi, out + j, ldo);
  for (; j + kLanes <= D; j += kLanes) rows_chunk<1>(coef, si, sk, ni, nk, in + j, ldi, out + j, ldo);
  if (j == D) return;
  for (std::int64_t i = 0; i < ni; ++i)  // head dims that are not a multiple of 16
    for (std::int64_t k = 0; k < nk; ++k) axpy(out + i * ldo + j, coef[i * si + k * sk], in + k * ldi + j, D - j);
}

}  // namespace
}  // namespace llmlab::attn
