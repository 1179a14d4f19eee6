// CPU decode attention, fp32: one query per row against its sequence's cached keys and values
// (see DecodeAttentionShape). A task is one (row, query head): it computes the row's scores,
// the max-subtracted softmax and the weighted sum of values in fp32, in key order, so the
// result does not depend on the schedule or thread count. Decode is memory-bound (each key is
// read once per query head of its group), so plain simd loops are enough here.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "ops/cpu/cpu_backend.hpp"

namespace llmlab {
namespace {

float dot(const float* a, const float* b, std::int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (std::int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Scores of one task, reused across calls: grown once to the longest sequence seen.
float* thread_scores(std::int64_t n) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < static_cast<std::size_t>(n)) buffer.resize(static_cast<std::size_t>(n));
  return buffer.data();
}

void decode_task(const DecodeAttentionShape& s, const float* q, const float* keys, const float* values,
                 std::int64_t len, float* out) {
  const std::int64_t D = s.head_dim, ld = s.kv_heads * D;  // ld: stride between cached tokens
  if (len == 0) {
    std::fill_n(out, D, 0.0f);
    return;
  }
  float* p = thread_scores(len);
  float max = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j < len; ++j) {
    p[j] = s.scale * dot(q, keys + j * ld, D);
    max = std::max(max, p[j]);
  }
  float sum = 0;
  for (std::int64_t j = 0; j < len; ++j) {
    p[j] = std::exp(p[j] - max);
    sum += p[j];
  }
  std::fill_n(out, D, 0.0f);
  for (std::int64_t j = 0; j < len; ++j) {
    const float* vj = values + j * ld;
    const float w = p[j];
#pragma omp simd
    for (std::int64_t d = 0; d < D; ++d) out[d] += w * vj[d];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (std::int64_t d = 0; d < D; ++d) out[d] *= inv;
}

}  // namespace

void CpuBackend::attention_decode(const DecodeAttentionShape& s, const float* q, const float* k_cache,
                                  const float* v_cache, const std::int32_t* seq, const std::int32_t* lengths,
                                  float* out) {
  if (s.heads <= 0 || s.kv_heads <= 0 || s.heads % s.kv_heads != 0 || s.head_dim <= 0 || s.rows < 0 ||
      s.capacity < 0)
    throw Error("attention_decode: bad shape (heads " + std::to_string(s.heads) + ", kv_heads " +
                std::to_string(s.kv_heads) + ", head_dim " + std::to_string(s.head_dim) + ")");
  for (std::int64_t n = 0; n < s.rows; ++n)
    if (lengths[n] < 0 || lengths[n] > s.capacity || (seq && seq[n] < 0))
      throw Error("attention_decode: row " + std::to_string(n) + " has length " + std::to_string(lengths[n]) +
                  " outside [0, capacity " + std::to_string(s.capacity) + "] or a negative sequence");
  const std::int64_t Hq = s.heads, D = s.head_dim, group = s.heads / s.kv_heads;
  const std::int64_t seq_stride = s.capacity * s.kv_heads * D;
  const int threads = threads_ > 0 ? threads_ : omp_get_max_threads();
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads) if (s.rows * Hq > 1)
  for (std::int64_t n = 0; n < s.rows; ++n)
    for (std::int64_t h = 0; h < Hq; ++h) {
      const std::int64_t sequence = seq ? seq[n] : n, kvh = h / group;
      const std::int64_t base = sequence * seq_stride + kvh * D;
      decode_task(s, q + (n * Hq + h) * D, k_cache + base, v_cache + base, lengths[n], out + (n * Hq + h) * D);
    }
}

}  // namespace llmlab
