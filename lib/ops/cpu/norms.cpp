// LayerNorm and RMSNorm over the channel dimension (fp32, fixed-order sums).
//
// Forward and apply share one row function, so recomputation rebuilds bit-identical outputs.
// Backward runs twice over the rows: once parallel over rows for dx, once parallel over channel
// slices for dw/db, each slice summing rows in order in float64 - deterministic and independent
// of the thread count, at the price of reading dout and x twice (memory-bound, ~2 x 12 MB at
// T=4096, C=768).
#include <algorithm>
#include <cmath>

#include "ops/cpu/cpu_backend.hpp"
#include "ops/cpu/cpu_math.hpp"

namespace llmlab {

namespace {

using cpu::lane_sum;

// --- per-row kernels -------------------------------------------------------------------------

LLMLAB_CPU_CLONES
void layernorm_stats(const float* x, std::int64_t C, float eps, float* mean_rstd) {
  const float n = static_cast<float>(C);
  const float mean = lane_sum(C, [&](std::int64_t i) { return x[i]; }) / n;
  // Two passes (centred squares) rather than E[x^2] - mean^2, which cancels for large means.
  const float var = lane_sum(C, [&](std::int64_t i) { return (x[i] - mean) * (x[i] - mean); }) / n;
  mean_rstd[0] = mean;
  mean_rstd[1] = 1.0f / std::sqrt(var + eps);
}

// The only place LayerNorm outputs are computed (forward and apply both call it).
LLMLAB_CPU_CLONES
void layernorm_row(const float* x, const float* w, const float* b, float mean, float rstd, float* out,
                   std::int64_t C) {
#pragma omp simd
  for (std::int64_t i = 0; i < C; ++i) out[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

// dx += rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)), dnorm = dout * w.
LLMLAB_CPU_CLONES
void layernorm_dx_row(const float* dout, const float* x, const float* w, float mean, float rstd, float* dx,
                      std::int64_t C) {
  const float n = static_cast<float>(C);
  const float dnorm_mean = lane_sum(C, [&](std::int64_t i) { return dout[i] * w[i]; }) / n;
  const float dnorm_xhat_mean =
      lane_sum(C, [&](std::int64_t i) { return dout[i] * w[i] * ((x[i] - mean) * rstd); }) / n;
#pragma omp simd
  for (std::int64_t i = 0; i < C; ++i) {
    const float xhat = (x[i] - mean) * rstd;
    dx[i] += (dout[i] * w[i] - dnorm_mean - xhat * dnorm_xhat_mean) * rstd;
  }
}

LLMLAB_CPU_CLONES
float rmsnorm_rstd(const float* x, std::int64_t C, float eps) {
  const float ms = lane_sum(C, [&](std::int64_t i) { return x[i] * x[i]; }) / static_cast<float>(C);
  return 1.0f / std::sqrt(ms + eps);
}

// The only place RMSNorm outputs are computed; (x * rstd) * w in Hugging Face Llama's order.
LLMLAB_CPU_CLONES
void rmsnorm_row(const float* x, const float* w, float rstd, float* out, std::int64_t C) {
#pragma omp simd
  for (std::int64_t i = 0; i < C; ++i) out[i] = (x[i] * rstd) * w[i];
}

// dx += rstd * (dnorm - xhat * mean(dnorm * xhat)), dnorm = dout * w, xhat = x * rstd.
LLMLAB_CPU_CLONES
void rmsnorm_dx_row(const float* dout, const float* x, const float* w, float rstd, float* dx, std::int64_t C) {
  const float dnorm_xhat_mean =
      lane_sum(C, [&](std::int64_t i) { return dout[i] * w[i] * (x[i] * rstd); }) / static_cast<float>(C);
#pragma omp simd
  for (std::int64_t i = 0; i < C; ++i) dx[i] += (dout[i] * w[i] - (x[i] * rstd) * dnorm_xhat_mean) * rstd;
}

// --- weight gradients: one channel slice over all rows ----------------------------------------

// dw[j] += sum_t dout[t,j] * xhat[t,j]; db[j] += sum_t dout[t,j] (db may be null). xhat is
// (x - mean) * rstd; RMSNorm passes mean = 0. stats holds (mean, rstd) pairs with the given
// stride (2 for LayerNorm's mean_rstd, 1 for RMSNorm's rstd with mean fixed at 0).
LLMLAB_CPU_CLONES
void norm_weight_grad_slice(const float* dout, const float* x, const float* stats, std::int64_t stride,
                            bool has_mean, float* dw, float* db, std::int64_t T, std::int64_t C, std::int64_t j0,
                            std::int64_t width) {
  double sw[cpu::kColumnBlock] = {};
  double sb[cpu::kColumnBlock] = {};
  for (std::int64_t t = 0; t < T; ++t) {
    const float mean = has_mean ? stats[t * stride] : 0.0f;
    const float rstd = stats[t * stride + (has_mean ? 1 : 0)];
    const float* d = dout + t * C + j0;
    const float* xr = x + t * C + j0;
#pragma omp simd
    for (std::int64_t j = 0; j < width; ++j) {
      sw[j] += static_cast<double>(d[j] * ((xr[j] - mean) * rstd));
      sb[j] += static_cast<double>(d[j]);
    }
  }
  for (std::int64_t j = 0; j < width; ++j) {
    dw[j0 + j] += static_cast<float>(sw[j]);
    if (db != nullptr) db[j0 + j] += static_cast<float>(sb[j]);
  }
}

}  // namespace

// --- LayerNorm ---------------------------------------------------------------------------------

void CpuBackend::layernorm_forward(const float* x, const float* w, const float* b, float* out, float* mean_rstd,
                                   std::int64_t T, std::int64_t C, float eps) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * C >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) {
    layernorm_stats(x + t * C, C, eps, mean_rstd + 2 * t);
    layernorm_row(x + t * C, w, b, mean_rstd[2 * t], mean_rstd[2 * t + 1], out + t * C, C);
  }
}

void CpuBackend::layernorm_apply(const float* x, const float* w, const float* b, const float* mean_rstd, float* out,
                                 std::int64_t T, std::int64_t C) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * C >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) layernorm_row(x + t * C, w, b, mean_rstd[2 * t], mean_rstd[2 * t + 1], out + t * C, C);
}

void CpuBackend::layernorm_backward(const float* dout, const float* x, const float* w, const float* mean_rstd,
                                    float* dx, float* dw, float* db, std::int64_t T, std::int64_t C) {
  const bool parallel = T * C >= cpu::kParallelMin;
#pragma omp parallel num_threads(threads_) if (parallel)
  {
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < T; ++t)
      layernorm_dx_row(dout + t * C, x + t * C, w, mean_rstd[2 * t], mean_rstd[2 * t + 1], dx + t * C, C);
    const std::int64_t blocks = (C + cpu::kColumnBlock - 1) / cpu::kColumnBlock;
#pragma omp for schedule(static)
    for (std::int64_t blk = 0; blk < blocks; ++blk) {
      const std::int64_t j0 = blk * cpu::kColumnBlock;
      norm_weight_grad_slice(dout, x, mean_rstd, 2, true, dw, db, T, C, j0, std::min(cpu::kColumnBlock, C - j0));
    }
  }
}

// --- RMSNorm -----------------------------------------------------------------------------------

void CpuBackend::rmsnorm_forward(const float* x, const float* w, float* out, float* rstd, std::int64_t T,
                                 std::int64_t C, float eps) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * C >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) {
    rstd[t] = rmsnorm_rstd(x + t * C, C, eps);
    rmsnorm_row(x + t * C, w, rstd[t], out + t * C, C);
  }
}

void CpuBackend::rmsnorm_apply(const float* x, const float* w, const float* rstd, float* out, std::int64_t T,
                               std::int64_t C) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * C >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) rmsnorm_row(x + t * C, w, rstd[t], out + t * C, C);
}

void CpuBackend::rmsnorm_backward(const float* dout, const float* x, const float* w, const float* rstd, float* dx,
                                  float* dw, std::int64_t T, std::int64_t C) {
  const bool parallel = T * C >= cpu::kParallelMin;
#pragma omp parallel num_threads(threads_) if (parallel)
  {
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < T; ++t) rmsnorm_dx_row(dout + t * C, x + t * C, w, rstd[t], dx + t * C, C);
    const std::int64_t blocks = (C + cpu::kColumnBlock - 1) / cpu::kColumnBlock;
#pragma omp for schedule(static)
    for (std::int64_t blk = 0; blk < blocks; ++blk) {
      const std::int64_t j0 = blk * cpu::kColumnBlock;
      norm_weight_grad_slice(dout, x, rstd, 1, false, dw, nullptr, T, C, j0, std::min(cpu::kColumnBlock, C - j0));
    }
  }
}

}  // namespace llmlab
