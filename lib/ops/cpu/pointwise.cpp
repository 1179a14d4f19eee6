// Pointwise ops: rotary embedding, GELU (tanh), SwiGLU, token/position embeddings.
//
// Elementwise kernels run over fixed 16K-element chunks (64 KiB per stream, L2-resident) in
// parallel; exp goes through cpu::exp_approx so the loops vectorise. Embedding gradients are
// parallel over channel slices with tokens in order, so repeated ids accumulate in the same
// order whatever the thread count.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "ops/cpu/cpu_math.hpp"

namespace llmlab {

namespace {

constexpr std::int64_t kChunk = 1 << 14;

// Runs kernel(begin, length) over [0, n) in kChunk pieces, in parallel for large n.
template <class Kernel>
void for_chunks(std::int64_t n, int threads, Kernel kernel) {
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= cpu::kParallelMin)
  for (std::int64_t c = 0; c < chunks; ++c) kernel(c * kChunk, std::min(kChunk, n - c * kChunk));
}

// --- RoPE ----------------------------------------------------------------------------------------

// cos/sin of pos * inv_freq[i] for positions [0, positions), i < D/2, row-major [pos, D/2].
struct RopeTable {
  std::int64_t positions = 0;
  std::vector<float> cos, sin;
};

// Hugging Face computes inv_freq = 1 / theta^(2i/D) in float32 (pow and division each round);
// here it is computed in float64 and rounded once, which differs from HF by at most ~1 ulp.
// The angle is then a float32 product pos * inv_freq exactly as HF's float32 outer product
// (this rounding, ~pos * 6e-8 rad, dominates at long positions, so matching it matters more),
// and cos/sin of that float angle are evaluated in float64 and rounded (HF: float32 cos/sin,
// <= 1 ulp apart).
std::shared_ptr<const RopeTable> build_rope_table(std::int64_t positions, std::int64_t D, float theta) {
  auto table = std::make_shared<RopeTable>();
  const std::int64_t half = D / 2;
  table->positions = positions;
  table->cos.resize(static_cast<std::size_t>(positions * half));
  table->sin.resize(static_cast<std::size_t>(positions * half));
  std::vector<float> inv_freq(static_cast<std::size_t>(half));
  for (std::int64_t i = 0; i < half; ++i)
    inv_freq[static_cast<std::size_t>(i)] = static_cast<float>(
        1.0 / std::pow(static_cast<double>(theta), static_cast<double>(2 * i) / static_cast<double>(D)));
  for (std::int64_t p = 0; p < positions; ++p)
    for (std::int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[static_cast<std::size_t>(i)];
      const auto k = static_cast<std::size_t>(p * half + i);
      table->cos[k] = static_cast<float>(std::cos(static_cast<double>(angle)));
      table->sin[k] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  return table;
}

// Tables are cached per (theta, D) and grown to the next power of two of the largest position
// seen, so a training run builds them once; a shared_ptr keeps the table a call uses alive.
std::shared_ptr<const RopeTable> rope_table(std::int64_t max_pos, std::int64_t D, float theta) {
  static std::mutex mutex;
  static std::map<std::pair<std::uint32_t, std::int64_t>, std::shared_ptr<const RopeTable>> cache;
  const std::lock_guard lock(mutex);
  auto& slot = cache[{std::bit_cast<std::uint32_t>(theta), D}];
  if (!slot || slot->positions <= max_pos)
    slot = build_rope_table(static_cast<std::int64_t>(std::bit_ceil(static_cast<std::uint64_t>(max_pos) + 1)), D, theta);
  return slot;
}

// Rotates each (x_i, x_{i+D/2}) pair of H heads of one token by +angle (forward) or by -angle
// (backward: the transpose of a rotation is its inverse).
LLMLAB_CPU_CLONES
void rope_token(float* x, const float* cos, const float* sin, std::int64_t H, std::int64_t D, bool inverse) {
  const std::int64_t half = D / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  for (std::int64_t h = 0; h < H; ++h) {
    float* a = x + h * D;
    float* b = a + half;
#pragma omp simd
    for (std::int64_t i = 0; i < half; ++i) {
      const float s = sign * sin[i];
      const float x1 = a[i], x2 = b[i];
      a[i] = x1 * cos[i] - x2 * s;
      b[i] = x2 * cos[i] + x1 * s;
    }
  }
}

void rope(float* x, const std::int32_t* pos, std::int64_t T, std::int64_t H, std::int64_t D, float theta, bool inverse,
          int threads) {
  if (T <= 0) return;
  if (D % 2 != 0) throw Error(fmt::format("rope: head dim {} must be even", D));
  std::int32_t max_pos = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    if (pos[t] < 0) throw Error(fmt::format("rope: negative position {} at token {}", pos[t], t));
    max_pos = std::max(max_pos, pos[t]);
  }
  const auto table = rope_table(max_pos, D, theta);
  const std::int64_t half = D / 2;
#pragma omp parallel for num_threads(threads) schedule(static) if (T * H * D >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t row = static_cast<std::int64_t>(pos[t]) * half;
    rope_token(x + t * H * D, table->cos.data() + row, table->sin.data() + row, H, D, inverse);
  }
}

// --- GELU and SwiGLU -------------------------------------------------------------------------------

// gelu_new: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Since 0.5 (1 + tanh(u)) =
// sigmoid(2u), it is computed as x * sigmoid(2u), which avoids tanh's cancellation near 0.
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

LLMLAB_CPU_CLONES
void gelu_forward_kernel(const float* x, float* out, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u = kGeluC * (v + kGeluA * v * v * v);
    out[i] = v * cpu::sigmoid_approx(2.0f * u);
  }
}

// d/dx [x s(2u)] = s + x * 2 s (1 - s) * du/dx, du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
LLMLAB_CPU_CLONES
void gelu_backward_kernel(const float* dout, const float* x, float* dx, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u = kGeluC * (v + kGeluA * v * v * v);
    const float s = cpu::sigmoid_approx(2.0f * u);
    const float du = kGeluC * (1.0f + 3.0f * kGeluA * v * v);
    dx[i] = dout[i] * (s + v * 2.0f * s * (1.0f - s) * du);
  }
}

LLMLAB_CPU_CLONES
void swiglu_forward_kernel(const float* gate, const float* up, float* out, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) out[i] = gate[i] * cpu::sigmoid_approx(gate[i]) * up[i];
}

// silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
LLMLAB_CPU_CLONES
void swiglu_backward_kernel(const float* dout, const float* gate, const float* up, float* dgate, float* dup,
                            std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = cpu::sigmoid_approx(g);
    const float d = dout[i];
    dgate[i] = d * up[i] * (s * (1.0f + g * (1.0f - s)));
    dup[i] = d * (g * s);
  }
}

// --- embeddings ------------------------------------------------------------------------------------

LLMLAB_CPU_CLONES
void embedding_row(const float* wte_row, const float* wpe_row, float* out, std::int64_t C) {
  if (wpe_row == nullptr) {
    std::copy(wte_row, wte_row + C, out);
    return;
  }
#pragma omp simd
  for (std::int64_t i = 0; i < C; ++i) out[i] = wte_row[i] + wpe_row[i];
}

// table[index[t], j0:j0+width] += dout[t, j0:j0+width] for t in order.
LLMLAB_CPU_CLONES
void scatter_add_slice(const float* dout, const std::int32_t* index, float* table, std::int64_t T, std::int64_t C,
                       std::int64_t j0, std::int64_t width) {
  for (std::int64_t t = 0; t < T; ++t) {
    const float* src = dout + t * C + j0;
    float* dst = table + static_cast<std::int64_t>(index[t]) * C + j0;
#pragma omp simd
    for (std::int64_t j = 0; j < width; ++j) dst[j] += src[j];
  }
}

}  // namespace

void CpuBackend::rope_forward(float* x, const std::int32_t* pos, std::int64_t T, std::int64_t H, std::int64_t D,
                              float theta) {
  rope(x, pos, T, H, D, theta, false, threads_);
}

void CpuBackend::rope_backward(float* dx, const std::int32_t* pos, std::int64_t T, std::int64_t H, std::int64_t D,
                               float theta) {
  rope(dx, pos, T, H, D, theta, true, threads_);
}

void CpuBackend::gelu_forward(const float* x, float* out, std::int64_t n) {
  for_chunks(n, threads_, [&](std::int64_t i, std::int64_t len) { gelu_forward_kernel(x + i, out + i, len); });
}

void CpuBackend::gelu_backward(const float* dout, const float* x, float* dx, std::int64_t n) {
  for_chunks(n, threads_,
             [&](std::int64_t i, std::int64_t len) { gelu_backward_kernel(dout + i, x + i, dx + i, len); });
}

void CpuBackend::swiglu_forward(const float* gate, const float* up, float* out, std::int64_t n) {
  for_chunks(n, threads_,
             [&](std::int64_t i, std::int64_t len) { swiglu_forward_kernel(gate + i, up + i, out + i, len); });
}

void CpuBackend::swiglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup,
                                 std::int64_t n) {
  for_chunks(n, threads_, [&](std::int64_t i, std::int64_t len) {
    swiglu_backward_kernel(dout + i, gate + i, up + i, dgate + i, dup + i, len);
  });
}

void CpuBackend::embedding_forward(const std::int32_t* ids, const std::int32_t* pos, const float* wte,
                                   const float* wpe, float* out, std::int64_t T, std::int64_t C) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * C >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) {
    const float* wpe_row = wpe != nullptr ? wpe + static_cast<std::int64_t>(pos[t]) * C : nullptr;
    embedding_row(wte + static_cast<std::int64_t>(ids[t]) * C, wpe_row, out + t * C, C);
  }
}

void CpuBackend::embedding_backward(const float* dout, const std::int32_t* ids, const std::int32_t* pos, float* dwte,
                                    float* dwpe, std::int64_t T, std::int64_t C) {
  const std::int64_t blocks = (C + cpu::kColumnBlock - 1) / cpu::kColumnBlock;
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * C >= cpu::kParallelMin)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    const std::int64_t j0 = blk * cpu::kColumnBlock;
    const std::int64_t width = std::min(cpu::kColumnBlock, C - j0);
    scatter_add_slice(dout, ids, dwte, T, C, j0, width);
    if (dwpe != nullptr) scatter_add_slice(dout, pos, dwpe, T, C, j0, width);
  }
}

}  // namespace llmlab
