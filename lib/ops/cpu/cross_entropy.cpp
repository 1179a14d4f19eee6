// Fused softmax cross-entropy over logits [T, V], in place (see backend.hpp for the contract).
//
// Per row: a max pass, then one pass that computes exp(x - max), sums it in float64 and (when a
// gradient is wanted) stores it back, then one scaling pass. A 50257-float row is 200 KB, so
// the second and third passes hit L2: about one trip to memory per logit. Rows are independent
// and the total is a serial float64 sum of losses[] in row order, so results do not depend on
// the thread count.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "ops/cpu/cpu_math.hpp"

namespace llmlab {

namespace {

LLMLAB_CPU_CLONES
float row_max(const float* x, std::int64_t V) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (std::int64_t i = 0; i < V; ++i) m = std::max(m, x[i]);  // max is exact: order cannot matter
  return m;
}

// sum_i exp(x_i - max) over 16 fixed float64 lanes (same bits on every ISA); with Store, x_i is
// overwritten with exp(x_i - max). A template rather than a runtime flag: a branch in the loop
// body stops GCC from vectorising it.
template <bool Store>
LLMLAB_CPU_CLONES double exp_sum(float* x, std::int64_t V, float max) {
  double acc[cpu::kLanes] = {};
  float e[cpu::kLanes];
  std::int64_t i = 0;
  for (; i + cpu::kLanes <= V; i += cpu::kLanes) {
    for (int l = 0; l < cpu::kLanes; ++l) e[l] = cpu::exp_approx(x[i + l] - max);
    for (int l = 0; l < cpu::kLanes; ++l) {
      if constexpr (Store) x[i + l] = e[l];
      acc[l] += static_cast<double>(e[l]);
    }
  }
  for (int l = 0; i < V; ++i, ++l) {
    e[0] = cpu::exp_approx(x[i] - max);
    if constexpr (Store) x[i] = e[0];
    acc[l] += static_cast<double>(e[0]);
  }
  for (int width = cpu::kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0];
}

LLMLAB_CPU_CLONES
void scale_row(float* x, std::int64_t V, float s) {
#pragma omp simd
  for (std::int64_t i = 0; i < V; ++i) x[i] *= s;
}

LLMLAB_CPU_CLONES
void zero_row(float* x, std::int64_t V) {
#pragma omp simd
  for (std::int64_t i = 0; i < V; ++i) x[i] = 0.0f;
}

// One row: writes lse and returns the loss (0 when target < 0); when grad_scale != 0 the row
// becomes grad_scale * (softmax - onehot(target)), or zeros when target < 0.
float cross_entropy_row(float* x, std::int64_t V, std::int32_t target, float grad_scale, float* lse) {
  const bool counted = target >= 0;
  const bool grad = grad_scale != 0.0f && counted;
  const float max = row_max(x, V);
  const float x_target = counted ? x[target] : 0.0f;  // read before the row is overwritten
  const double sum = grad ? exp_sum<true>(x, V, max) : exp_sum<false>(x, V, max);
  const double log_sum = std::log(sum);
  *lse = static_cast<float>(static_cast<double>(max) + log_sum);
  if (grad) {
    scale_row(x, V, static_cast<float>(static_cast<double>(grad_scale) / sum));
    x[target] -= grad_scale;
  } else if (grad_scale != 0.0f) {
    zero_row(x, V);
  }
  // -log p(target) = log_sum - (x_target - max), in float64 so large logits (~1e4) lose nothing.
  return counted ? static_cast<float>(log_sum - (static_cast<double>(x_target) - static_cast<double>(max))) : 0.0f;
}

}  // namespace

double CpuBackend::cross_entropy(float* logits, const std::int32_t* targets, const std::uint8_t* mask, float* losses,
                                 float* lse, std::int64_t T, std::int64_t V, float grad_scale) {
  for (std::int64_t t = 0; t < T; ++t)
    if (targets[t] >= V) throw Error(fmt::format("cross_entropy: target {} at row {} outside vocabulary {}", targets[t], t, V));
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * V >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) {
    const bool counted = targets[t] >= 0 && (mask == nullptr || mask[t] != 0);
    losses[t] = cross_entropy_row(logits + t * V, V, counted ? targets[t] : -1, grad_scale, lse + t);
  }
  double total = 0;
  for (std::int64_t t = 0; t < T; ++t) total += static_cast<double>(losses[t]);
  return total;
}

void CpuBackend::cross_entropy_backward(float* logits, const std::int32_t* targets, const float* dloss, std::int64_t T,
                                        std::int64_t V) {
  for (std::int64_t t = 0; t < T; ++t)
    if (targets[t] >= V)
      throw Error(fmt::format("cross_entropy_backward: target {} at row {} outside vocabulary {}", targets[t], t, V));
  // The fused op's row with grad_scale = dloss[t]: the same passes in the same order, so a
  // uniform dloss gives the fused gradient bit for bit (and large logits lose nothing to a
  // rounded lse).
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * V >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) {
    float lse = 0;
    if (targets[t] < 0 || dloss[t] == 0.0f) zero_row(logits + t * V, V);
    else cross_entropy_row(logits + t * V, V, targets[t], dloss[t], &lse);
  }
}

}  // namespace llmlab
