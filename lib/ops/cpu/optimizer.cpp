// AdamW and the float64 sum of squares used for gradient-norm clipping.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/cpu_backend.hpp"
#include "ops/cpu/cpu_math.hpp"

namespace llmlab {

namespace {

// Fixed so the reduction order, hence the bits of the norm, never depend on the thread count.
constexpr std::int64_t kSumChunk = std::int64_t{1} << 16;
constexpr std::int64_t kAdamChunk = std::int64_t{1} << 14;

// Sum of x_i^2 over 16 fixed float64 lanes folded in a fixed order (same bits on every ISA).
LLMLAB_CPU_CLONES
double chunk_sum_squares(const float* x, std::int64_t n) {
  double acc[cpu::kLanes] = {};
  std::int64_t i = 0;
  for (; i + cpu::kLanes <= n; i += cpu::kLanes)
    for (int l = 0; l < cpu::kLanes; ++l) acc[l] += static_cast<double>(x[i + l]) * static_cast<double>(x[i + l]);
  for (int l = 0; i < n; ++i, ++l) acc[l] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  for (int width = cpu::kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0];
}

struct AdamConstants {
  float decay;        // 1 - lr * wd
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;    // lr / (1 - beta1^step)
  float bc2_sqrt;     // sqrt(1 - beta2^step)
  float eps;
};

// PyTorch's single-tensor AdamW: p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= step_size * m / (sqrt(v) / sqrt(bc2) + eps).
LLMLAB_CPU_CLONES
void adamw_kernel(float* p, const float* g, float* m, float* v, std::int64_t n, const AdamConstants& k) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = k.beta1 * m[i] + k.one_minus_beta1 * gi;
    const float vi = k.beta2 * v[i] + k.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    // The same operations in the same order as PyTorch (no reciprocal tricks), so fp32 results
    // can match torch bit for bit. This loop only vectorises with -fno-math-errno (sqrt's errno
    // branch); GCC ignores optimize attributes on target_clones functions.
    p[i] = p[i] * k.decay - k.step_size * (mi / (std::sqrt(vi) / k.bc2_sqrt + k.eps));
  }
}

}  // namespace

double CpuBackend::sum_squares(const float* x, std::int64_t n) {
  if (n <= 0) return 0.0;
  const std::int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(static_cast<std::size_t>(chunks));
#pragma omp parallel for num_threads(threads_) schedule(static) if (chunks > 1)
  for (std::int64_t c = 0; c < chunks; ++c)
    partial[static_cast<std::size_t>(c)] = chunk_sum_squares(x + c * kSumChunk, std::min(kSumChunk, n - c * kSumChunk));
  double total = 0;
  for (const double s : partial) total += s;
  return total;
}

void CpuBackend::adamw(float* p, const float* g, float* m, float* v, std::int64_t n, float lr, float beta1, float beta2,
                       float eps, float weight_decay, std::int64_t step) {
  // Bias corrections in float64 as PyTorch computes them (Python floats), then rounded once.
  const double s = static_cast<double>(step);
  AdamConstants k{};
  k.decay = static_cast<float>(1.0 - static_cast<double>(lr) * static_cast<double>(weight_decay));
  k.beta1 = beta1;
  k.one_minus_beta1 = 1.0f - beta1;
  k.beta2 = beta2;
  k.one_minus_beta2 = 1.0f - beta2;
  k.step_size = static_cast<float>(static_cast<double>(lr) / (1.0 - std::pow(static_cast<double>(beta1), s)));
  k.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(beta2), s)));
  k.eps = eps;
  const std::int64_t chunks = (n + kAdamChunk - 1) / kAdamChunk;
#pragma omp parallel for num_threads(threads_) schedule(static) if (n >= cpu::kParallelMin)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t i = c * kAdamChunk;
    adamw_kernel(p + i, g + i, m + i, v + i, std::min(kAdamChunk, n - i), k);
  }
}

}  // namespace llmlab
