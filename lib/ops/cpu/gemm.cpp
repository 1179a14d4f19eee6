// GEMM through oneDNN, plus the bias add and its column-sum gradient.
//
// Which oneDNN API. dnnl_sgemm and a matmul primitive (brgemm:avx512_core here) were timed
// against each other, interleaved, best of 6+ runs, on the training shapes (T in {256, 1024,
// 4096} x GPT-2's linear layers x forward / input-gradient / weight-gradient, both weight
// layouts; /tmp harness, numbers in the ops report). The machine (2 EPYC cores) was shared
// with builds at load 6-11, so single numbers are noisy, but the pattern held across three
// sweeps: the primitive won most transposed products - the X W^T forward by up to 2x, the
// dY^T X weight gradient by 1.1-2x - while dnnl_sgemm won most no-transpose products (the
// dY W input gradient by 1.2-1.7x; the Conv1D forward X W was a toss-up) and the LM head's
// weight gradient dW[V, C] += dY^T X (1.3-2x at T = 256..4096, the largest GEMM of a step).
// Hence: dnnl_sgemm for no transpose and for trans_a with a vocabulary-sized M, else matmul.
// LLMLAB_CPU_GEMM=sgemm|matmul forces one API, to re-measure with bench-sgemm on a quiet box.
//
// Primitives are created once per (shape, transposes, leading dims, alpha, beta, threads) and
// cached. oneDNN fixes blocking and the thread split at creation, and dnnl_sgemm's split
// depends only on shape and thread count, so both give bit-identical results run to run.
#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "core/error.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "ops/cpu/cpu_math.hpp"

namespace llmlab {

namespace {

struct GemmKey {
  bool trans_a, trans_b;
  std::int64_t M, N, K, lda, ldb, ldc;
  std::uint32_t alpha_bits, beta_bits;
  int threads;
  auto operator<=>(const GemmKey&) const = default;
};

// oneDNN's OpenMP runtime uses omp_get_max_threads() of the calling thread; this sets the
// backend's count for the duration of one call and restores the caller's.
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int threads) : saved_(omp_get_max_threads()) {
    if (threads != saved_) omp_set_num_threads(threads);
  }
  ~ScopedOmpThreads() {
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
  }
  ScopedOmpThreads(const ScopedOmpThreads&) = delete;
  ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;

 private:
  int saved_;
};

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::memory::desc matrix_desc(std::int64_t rows, std::int64_t cols, std::int64_t ld, bool transposed) {
  // A transposed operand is the same buffer read column-major: swap the strides, not the data.
  const dnnl::memory::dims strides = transposed ? dnnl::memory::dims{1, ld} : dnnl::memory::dims{ld, 1};
  return {{rows, cols}, dnnl::memory::data_type::f32, strides};
}

dnnl::matmul make_matmul(const GemmKey& k, float alpha, float beta) {
  dnnl::primitive_attr attr;
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(beta);  // C = alpha*AB + beta*C; beta = 1 is the gradient accumulation
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::desc desc(matrix_desc(k.M, k.K, k.lda, k.trans_a), matrix_desc(k.K, k.N, k.ldb, k.trans_b),
                                matrix_desc(k.M, k.N, k.ldc, false));
  return dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, cpu_engine()));
}

// The cache is bounded so that a sweep over many shapes (tests, benchmarks) cannot grow it
// without limit; a training run uses a few dozen shapes.
constexpr std::size_t kMaxCachedPrimitives = 512;

dnnl::matmul& cached_matmul(const GemmKey& key, float alpha, float beta) {
  static std::mutex mutex;
  static std::map<GemmKey, dnnl::matmul> cache;
  const std::lock_guard lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) {
    if (cache.size() >= kMaxCachedPrimitives) cache.clear();
    it = cache.emplace(key, make_matmul(key, alpha, beta)).first;
  }
  return it->second;
}

void run_matmul(const GemmKey& k, float alpha, const float* A, const float* B, float beta, float* C) {
  dnnl::matmul& mm = cached_matmul(k, alpha, beta);
  thread_local dnnl::stream stream(cpu_engine());
  // oneDNN's memory objects take non-const handles but matmul only reads SRC and WEIGHTS.
  dnnl::memory a(matrix_desc(k.M, k.K, k.lda, k.trans_a), cpu_engine(), const_cast<float*>(A));
  dnnl::memory b(matrix_desc(k.K, k.N, k.ldb, k.trans_b), cpu_engine(), const_cast<float*>(B));
  dnnl::memory c(matrix_desc(k.M, k.N, k.ldc, false), cpu_engine(), C);
  mm.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
  stream.wait();
}

void run_sgemm(const GemmKey& k, float alpha, const float* A, const float* B, float beta, float* C) {
  const dnnl_status_t status = dnnl_sgemm(k.trans_a ? 'T' : 'N', k.trans_b ? 'T' : 'N', k.M, k.N, k.K, alpha, A,
                                          k.lda, B, k.ldb, beta, C, k.ldc);
  if (status != dnnl_success) throw Error(fmt::format("cpu gemm: dnnl_sgemm failed with status {}", static_cast<int>(status)));
}

enum class GemmApi { automatic, sgemm, matmul };

GemmApi gemm_api() {
  static const GemmApi api = [] {
    const char* env = std::getenv("LLMLAB_CPU_GEMM");
    const std::string v = env != nullptr ? env : "";
    if (v.empty() || v == "auto") return GemmApi::automatic;
    if (v == "sgemm") return GemmApi::sgemm;
    if (v == "matmul") return GemmApi::matmul;
    throw Error(fmt::format("LLMLAB_CPU_GEMM={}: expected auto, sgemm or matmul", v));
  }();
  return api;
}

// Rows from which a trans_a product counts as the LM head's weight gradient (M = vocabulary):
// GPT-2's 50257 and Llama's 32000 are above, hidden sizes up to 8192 below.
constexpr std::int64_t kVocabRows = 16384;

// The measured split (see the header comment).
bool prefer_sgemm(const GemmKey& k) {
  switch (gemm_api()) {
    case GemmApi::sgemm: return true;
    case GemmApi::matmul: return false;
    case GemmApi::automatic: break;
  }
  if (k.trans_b) return false;
  return !k.trans_a || k.M >= kVocabRows;
}

// K = 0: op(A) op(B) is the zero matrix, so C = beta * C (oneDNN rejects empty reductions).
void scale_only(float beta, float* C, std::int64_t M, std::int64_t N, std::int64_t ldc) {
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

}  // namespace

void CpuBackend::gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                      const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                      std::int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    scale_only(beta, C, M, N, ldc);
    return;
  }
  const GemmKey key{trans_a,
                    trans_b,
                    M,
                    N,
                    K,
                    lda,
                    ldb,
                    ldc,
                    std::bit_cast<std::uint32_t>(alpha),
                    std::bit_cast<std::uint32_t>(beta),
                    threads_};
  const ScopedOmpThreads scoped(threads_);
  try {
    if (prefer_sgemm(key))
      run_sgemm(key, alpha, A, B, beta, C);
    else
      run_matmul(key, alpha, A, B, beta, C);
  } catch (const dnnl::error& e) {
    throw Error(fmt::format("cpu gemm {}{} M={} N={} K={} lda={} ldb={} ldc={}: oneDNN: {}", trans_a ? 'T' : 'N',
                            trans_b ? 'T' : 'N', M, N, K, lda, ldb, ldc, e.what()));
  }
}

void CpuBackend::bias_forward(float* y, const float* bias, std::int64_t T, std::int64_t N, std::int64_t ld) {
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * N >= cpu::kParallelMin)
  for (std::int64_t t = 0; t < T; ++t) {
    float* row = y + t * ld;
#pragma omp simd
    for (std::int64_t j = 0; j < N; ++j) row[j] += bias[j];
  }
}

void CpuBackend::bias_backward(const float* dy, float* dbias, std::int64_t T, std::int64_t N, std::int64_t ld) {
  // Parallel over column slices, rows summed in order in float64: the result does not depend
  // on the thread count, and 4096-row sums keep ~1e-7 relative accuracy.
  const std::int64_t blocks = (N + cpu::kColumnBlock - 1) / cpu::kColumnBlock;
#pragma omp parallel for num_threads(threads_) schedule(static) if (T * N >= cpu::kParallelMin)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    const std::int64_t j0 = blk * cpu::kColumnBlock;
    const std::int64_t width = std::min(cpu::kColumnBlock, N - j0);
    double sum[cpu::kColumnBlock] = {};
    for (std::int64_t t = 0; t < T; ++t) {
      const float* row = dy + t * ld + j0;
#pragma omp simd
      for (std::int64_t j = 0; j < width; ++j) sum[j] += static_cast<double>(row[j]);
    }
    for (std::int64_t j = 0; j < width; ++j) dbias[j0 + j] += static_cast<float>(sum[j]);
  }
}

}  // namespace llmlab
