// Inline helpers private to the CPU kernels (ops/cpu/*.cpp): a branch-free exp that `omp simd`
// loops vectorise, fixed-order sums, and the size below which an op stays on one thread.
#pragma once

#include <bit>
#include <cstdint>

namespace llmlab::cpu {

// An OpenMP fork/join costs a few microseconds, about what 32K simple float operations take on
// one core; smaller ops run serially.
inline constexpr std::int64_t kParallelMin = std::int64_t{1} << 15;

// Channel slices for reductions over rows (bias, norm weights, embeddings): 64 floats = four
// cache lines, so two threads never write the same line.
inline constexpr std::int64_t kColumnBlock = 64;

// Hot serial kernels are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (the build sets no -march, and the binary must run on any x86-64).
#define LLMLAB_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// Sum of term(i) for i in [0, n) over 16 fixed lanes folded in a fixed order. Spelling the
// lanes out lets the compiler vectorise without reassociating, so the result is the same
// bits whatever the ISA clone, the pointer alignment or the thread count.
inline constexpr int kLanes = 16;
template <class Term>
inline float lane_sum(std::int64_t n, Term term) {
  float acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += term(i + l);
  for (int l = 0; i < n; ++i, ++l) acc[l] += term(i);
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0];
}

// exp(x) within ~2 ulp (the Cephes expf polynomial). glibc's expf does not vectorise without
// -ffast-math, which made cross-entropy over 50K logits and GELU 5-10x slower. x is clamped to
// [-87, 88]: exp(-87) ~ 1.6e-38 stands in for anything smaller (never 0, never denormal input).
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round x*log2(e) to the nearest integer with the 1.5*2^23 trick: no libm call, vectorises.
  const float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  // x - fx*ln2 with ln2 split in two so the reduction is exact to float precision.
  float r = x - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  const std::int32_t biased = static_cast<std::int32_t>(fx) + 127;  // in [1, 254] after the clamp
  return y * std::bit_cast<float>(biased << 23);
}

// 1 / (1 + exp(-x)); saturates cleanly to 0 and 1 thanks to exp_approx's clamp.
inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

}  // namespace llmlab::cpu
