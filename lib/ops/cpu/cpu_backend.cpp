// CpuBackend construction and memory: 64-byte aligned host allocations, copies and fills split
// across threads (one core cannot saturate memory bandwidth on EPYC), and `scale`.
#include "ops/cpu/cpu_backend.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "ops/cpu/cpu_math.hpp"

namespace llmlab {

namespace {

constexpr std::size_t kAlignment = 64;  // one cache line, and a full AVX-512 register
// Byte copies and fills below 1 MiB are faster on one thread than a fork/join.
constexpr std::size_t kParallelBytes = std::size_t{1} << 20;
// Unit of work for parallel copies: 256 KiB keeps the tail imbalance small on 2-64 threads.
constexpr std::size_t kCopyChunk = std::size_t{1} << 18;

// Runs fn(offset, length) over [0, bytes) in fixed chunks, in parallel when it is worth it.
template <class Fn>
void for_byte_chunks(std::size_t bytes, int threads, Fn fn) {
  if (bytes < kParallelBytes) {
    fn(std::size_t{0}, bytes);
    return;
  }
  const auto chunks = static_cast<std::int64_t>((bytes + kCopyChunk - 1) / kCopyChunk);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::size_t begin = static_cast<std::size_t>(c) * kCopyChunk;
    fn(begin, std::min(kCopyChunk, bytes - begin));
  }
}

void parallel_memcpy(void* dst, const void* src, std::size_t bytes, int threads) {
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  for_byte_chunks(bytes, threads, [&](std::size_t off, std::size_t len) { std::memcpy(d + off, s + off, len); });
}

}  // namespace

CpuBackend::CpuBackend(int threads) : threads_(threads > 0 ? threads : omp_get_max_threads()) {}

void* CpuBackend::allocate(std::size_t bytes) {
  // aligned_alloc wants a multiple of the alignment; a zero-byte request still gets a unique
  // pointer so that release() and null checks behave uniformly.
  const std::size_t rounded = std::max<std::size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  void* p = rounded < bytes ? nullptr : std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) throw Error(fmt::format("cpu backend: cannot allocate {} bytes", bytes));
  return p;
}

void CpuBackend::release(void* p) { std::free(p); }

void CpuBackend::copy_from_host(void* dst, const void* src, std::size_t bytes) {
  parallel_memcpy(dst, src, bytes, threads_);
}

void CpuBackend::copy_to_host(void* dst, const void* src, std::size_t bytes) {
  parallel_memcpy(dst, src, bytes, threads_);
}

void CpuBackend::copy(float* dst, const float* src, std::int64_t n) {
  if (n > 0) parallel_memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float), threads_);
}

void CpuBackend::zero(float* x, std::int64_t n) {
  if (n <= 0) return;
  auto* bytes = reinterpret_cast<char*>(x);
  for_byte_chunks(static_cast<std::size_t>(n) * sizeof(float), threads_,
                  [&](std::size_t off, std::size_t len) { std::memset(bytes + off, 0, len); });
}

void CpuBackend::scale(float* x, std::int64_t n, float alpha) {
#pragma omp parallel for simd num_threads(threads_) schedule(static) if (n >= cpu::kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

}  // namespace llmlab
