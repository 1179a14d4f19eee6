// Naive attention, the baseline flash is measured and tested against: per document, cuBLAS
// GEMMs batched over heads (storage-type inputs, fp32 compute) and small row kernels.
// Forward: S = scale Q K^T (storage type, into `saved`), softmax in place (P, and lse), O = P V.
// Backward: dP = dO V^T (fp32), dS = P (dP - rowsum(dO O)) (storage type), dV += P^T dO,
// dK += scale dS^T Q (fp32 accumulators over the q heads of a group), dQ = scale dS K.
// Grouped-query heads: a strided batch runs over kv heads, one batch per member g of the group
// (q head h = kvh * group + g sits g * D into a row, the next kv head's member group * D later).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <unordered_map>

#include "core/error.hpp"
#include "kernels/attention/attention_cuda.hpp"
#include "kernels/attention/flash_common.cuh"

namespace llmlab::cuda {
namespace {

using flash::check_cuda;

void check_cublas(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string(call) + " failed: " + cublasGetStatusName(status) + " (" +
                cublasGetStatusString(status) + ")");
}

// One handle per device and thread, created on first use and kept for the process (destroying
// it at thread exit could run after the CUDA runtime has shut down).
cublasHandle_t cublas_handle(cudaStream_t stream) {
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  auto it = handles.find(device);
  if (it == handles.end()) {
    cublasHandle_t h = nullptr;
    check_cublas(cublasCreate(&h), "cublasCreate");
    it = handles.emplace(device, h).first;
  }
  check_cublas(cublasSetStream(it->second, stream), "cublasSetStream");
  return it->second;
}

std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }

std::int64_t max_len(const std::int32_t* cu, std::int64_t docs) {
  std::int64_t m = 0;
  for (std::int64_t i = 0; i < docs; ++i) m = std::max<std::int64_t>(m, cu[i + 1] - cu[i]);
  return m;
}

// Column-major GEMM description for cublasGemmStridedBatchedEx (row-major tensors are read as
// their transposes); strides in elements.
struct Gemm {
  cublasOperation_t ta, tb;
  int m, n, k;
  float alpha;
  const void* a;
  cudaDataType at;
  std::int64_t lda, stride_a;
  const void* b;
  cudaDataType bt;
  std::int64_t ldb, stride_b;
  float beta;
  void* c;
  cudaDataType ct;
  std::int64_t ldc, stride_c;
  int batch;
};

void run_gemm(cublasHandle_t handle, const Gemm& g, const char* what) {
  check_cublas(cublasGemmStridedBatchedEx(handle, g.ta, g.tb, g.m, g.n, g.k, &g.alpha, g.a, g.at,
                                          static_cast<int>(g.lda), g.stride_a, g.b, g.bt, static_cast<int>(g.ldb),
                                          g.stride_b, &g.beta, g.c, g.ct, static_cast<int>(g.ldc), g.stride_c,
                                          g.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               what);
}

// Sum (or max) over a 128-thread block.
template <bool kMax>
__device__ float block_reduce(float x, float* scratch) {
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) {
    const float y = __shfl_xor_sync(0xffffffffu, x, m);
    x = kMax ? fmaxf(x, y) : x + y;
  }
  __syncthreads();  // scratch may still be read by an earlier reduction
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = x;
  __syncthreads();
  x = scratch[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) x = kMax ? fmaxf(x, scratch[w]) : x + scratch[w];
  return x;
}

// Row r of head h of one document: P = softmax(S) in place over the visible keys (0 after
// them), lse = max + log(sum). Grid (len, Hq), 128 threads.
template <typename T>
__global__ void __launch_bounds__(128) softmax_kernel(T* probs, float* lse, std::int64_t lse_head_stride, int start,
                                                      int len, bool causal) {
  __shared__ float scratch[4];
  const int r = static_cast<int>(blockIdx.x), h = static_cast<int>(blockIdx.y);
  T* row = probs + (static_cast<std::int64_t>(h) * len + r) * len;
  const int visible = causal ? r + 1 : len;
  float mx = -INFINITY;
  for (int c = static_cast<int>(threadIdx.x); c < visible; c += 128) mx = fmaxf(mx, flash::to_float(row[c]));
  mx = block_reduce<true>(mx, scratch);
  float sum = 0.0f;
  for (int c = static_cast<int>(threadIdx.x); c < visible; c += 128) sum += expf(flash::to_float(row[c]) - mx);
  sum = block_reduce<false>(sum, scratch);
  const float inv = 1.0f / sum;  // sum >= 1: the max itself contributes exp(0)
  for (int c = static_cast<int>(threadIdx.x); c < len; c += 128)
    row[c] = flash::from_float<T>(c < visible ? expf(flash::to_float(row[c]) - mx) * inv : 0.0f);
  if (threadIdx.x == 0) lse[h * lse_head_stride + start + r] = mx + logf(sum);
}

// dS = P (dP - Drow), Drow = rowsum(dO * O) of row r, head h. Grid (len, Hq), 128 threads.
template <typename T>
__global__ void __launch_bounds__(128) softmax_backward_kernel(const T* probs, const float* dp, T* ds, const T* out,
                                                               const T* dout, std::int64_t ldq, int head_dim,
                                                               int start, int len) {
  __shared__ float scratch[4];
  const int r = static_cast<int>(blockIdx.x), h = static_cast<int>(blockIdx.y);
  const std::int64_t off = (static_cast<std::int64_t>(start) + r) * ldq + static_cast<std::int64_t>(h) * head_dim;
  float d = 0.0f;
  for (int i = static_cast<int>(threadIdx.x); i < head_dim; i += 128)
    d += flash::to_float(out[off + i]) * flash::to_float(dout[off + i]);
  d = block_reduce<false>(d, scratch);
  const std::int64_t row = (static_cast<std::int64_t>(h) * len + r) * len;
  for (int c = static_cast<int>(threadIdx.x); c < len; c += 128)
    ds[row + c] = flash::from_float<T>(flash::to_float(probs[row + c]) * (dp[row + c] - d));
}

template <typename T>
__global__ void __launch_bounds__(256) to_storage_kernel(const float* in, T* out, std::int64_t n) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = flash::from_float<T>(in[i]);
}

struct Dims {
  std::int64_t T, Hq, Hkv, D, group, ldq, ldkv;
};

Dims dims_of(const AttentionShape& s) {
  return {s.tokens, s.heads, s.kv_heads, s.head_dim, s.heads / s.kv_heads, s.heads * s.head_dim,
          s.kv_heads * s.head_dim};
}

template <typename T>
void forward_impl(const AttentionShape& s, const AttentionTensors& t, T* saved, cudaStream_t stream,
                  cudaDataType dt) {
  const Dims d = dims_of(s);
  cublasHandle_t handle = cublas_handle(stream);
  const auto* q = static_cast<const T*>(t.q);
  const auto* k = static_cast<const T*>(t.k);
  const auto* v = static_cast<const T*>(t.v);
  auto* out = static_cast<T*>(t.out);
  std::int64_t offset = 0;  // of this document's probabilities
  for (std::int64_t i = 0; i < s.docs; ++i) {
    const std::int64_t start = t.cu_seqlens_host[i], L = t.cu_seqlens_host[i + 1] - start;
    if (L == 0) continue;
    T* probs = saved + offset;
    const int len = static_cast<int>(L);
    for (std::int64_t g = 0; g < d.group; ++g) {
      // S^T (col-major [L_k, L_q]) = K Q^T: A = K as [D, L] col-major, transposed.
      run_gemm(handle,
               {CUBLAS_OP_T, CUBLAS_OP_N, len, len, static_cast<int>(d.D), s.scale, k + start * d.ldkv, dt, d.ldkv,
                d.D, q + start * d.ldq + g * d.D, dt, d.ldq, d.group * d.D, 0.0f, probs + g * L * L, dt, L,
                d.group * L * L, static_cast<int>(d.Hkv)},
               "cublasGemmStridedBatchedEx (naive S = Q K^T)");
    }
    auto softmax = softmax_kernel<T>;
    LLMLAB_LAUNCH(softmax, dim3(static_cast<unsigned>(L), static_cast<unsigned>(d.Hq)), 128, 0, stream)(
        probs, t.lse, d.T, static_cast<int>(start), len, s.causal);
    check_cuda(cudaGetLastError(), "naive softmax kernel launch");
    for (std::int64_t g = 0; g < d.group; ++g) {
      // O^T [D, L_q] = V^T P^T: A = V as [D, L], B = P read as its transpose [L_k, L_q].
      run_gemm(handle,
               {CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d.D), len, len, 1.0f, v + start * d.ldkv, dt, d.ldkv, d.D,
                probs + g * L * L, dt, L, d.group * L * L, 0.0f, out + start * d.ldq + g * d.D, dt, d.ldq,
                d.group * d.D, static_cast<int>(d.Hkv)},
               "cublasGemmStridedBatchedEx (naive O = P V)");
    }
    offset += d.Hq * L * L;
  }
}

template <typename T>
void backward_impl(const AttentionShape& s, const AttentionTensors& t, const T* saved, void* workspace,
                   cudaStream_t stream, cudaDataType dt) {
  const Dims d = dims_of(s);
  const std::int64_t lmax = max_len(t.cu_seqlens_host, s.docs);
  auto* ws = static_cast<char*>(workspace);
  auto* dp = reinterpret_cast<float*>(ws);  // [Hq, L, L] of the current document
  ws += align256(static_cast<std::size_t>(d.Hq * lmax * lmax) * sizeof(float));
  auto* ds = reinterpret_cast<T*>(ws);  // [Hq, L, L]
  ws += align256(static_cast<std::size_t>(d.Hq * lmax * lmax) * sizeof(T));
  const std::int64_t kv_elems = d.T * d.ldkv;
  auto* dk_acc = reinterpret_cast<float*>(ws);  // [T, Hkv, D]
  ws += align256(static_cast<std::size_t>(kv_elems) * sizeof(float));
  auto* dv_acc = reinterpret_cast<float*>(ws);
  check_cuda(cudaMemsetAsync(dk_acc, 0, static_cast<std::size_t>(kv_elems) * sizeof(float), stream),
             "cudaMemsetAsync (naive dk accumulator)");
  check_cuda(cudaMemsetAsync(dv_acc, 0, static_cast<std::size_t>(kv_elems) * sizeof(float), stream),
             "cudaMemsetAsync (naive dv accumulator)");
  flash::zero_outside_docs(t.dq, t.cu_seqlens_host, s.docs, s.tokens, d.ldq, sizeof(T), stream,
                           "cudaMemsetAsync (naive dq padding)");

  cublasHandle_t handle = cublas_handle(stream);
  const auto* q = static_cast<const T*>(t.q);
  const auto* k = static_cast<const T*>(t.k);
  const auto* v = static_cast<const T*>(t.v);
  const auto* out = static_cast<const T*>(t.out);
  const auto* dout = static_cast<const T*>(t.dout);
  auto* dq = static_cast<T*>(t.dq);
  const int D = static_cast<int>(d.D), Hkv = static_cast<int>(d.Hkv);
  std::int64_t offset = 0;
  for (std::int64_t i = 0; i < s.docs; ++i) {
    const std::int64_t start = t.cu_seqlens_host[i], L = t.cu_seqlens_host[i + 1] - start;
    if (L == 0) continue;
    const T* probs = saved + offset;
    const int len = static_cast<int>(L);
    for (std::int64_t g = 0; g < d.group; ++g)  // dP^T [L_k, L_q] = V dO^T
      run_gemm(handle,
               {CUBLAS_OP_T, CUBLAS_OP_N, len, len, D, 1.0f, v + start * d.ldkv, dt, d.ldkv, d.D,
                dout + start * d.ldq + g * d.D, dt, d.ldq, d.group * d.D, 0.0f, dp + g * L * L, CUDA_R_32F, L,
                d.group * L * L, Hkv},
               "cublasGemmStridedBatchedEx (naive dP = dO V^T)");
    auto softmax_backward = softmax_backward_kernel<T>;
    LLMLAB_LAUNCH(softmax_backward, dim3(static_cast<unsigned>(L), static_cast<unsigned>(d.Hq)), 128, 0, stream)(
        probs, dp, ds, out, dout, d.ldq, D, static_cast<int>(start), len);
    check_cuda(cudaGetLastError(), "naive softmax backward kernel launch");
    for (std::int64_t g = 0; g < d.group; ++g) {
      const float beta = g == 0 ? 0.0f : 1.0f;  // the group's q heads accumulate into one kv head
      // dV^T [D, L_k] = dO^T P: A = dO as [D, L_q], B = P^T read transposed.
      run_gemm(handle,
               {CUBLAS_OP_N, CUBLAS_OP_T, D, len, len, 1.0f, dout + start * d.ldq + g * d.D, dt, d.ldq,
                d.group * d.D, probs + g * L * L, dt, L, d.group * L * L, beta, dv_acc + start * d.ldkv, CUDA_R_32F,
                d.ldkv, d.D, Hkv},
               "cublasGemmStridedBatchedEx (naive dV = P^T dO)");
      // dK^T [D, L_k] = scale Q^T dS.
      run_gemm(handle,
               {CUBLAS_OP_N, CUBLAS_OP_T, D, len, len, s.scale, q + start * d.ldq + g * d.D, dt, d.ldq,
                d.group * d.D, ds + g * L * L, dt, L, d.group * L * L, beta, dk_acc + start * d.ldkv, CUDA_R_32F,
                d.ldkv, d.D, Hkv},
               "cublasGemmStridedBatchedEx (naive dK = dS^T Q)");
      // dQ^T [D, L_q] = scale K^T dS^T: A = K as [D, L_k], B = dS read as its transpose [L_k, L_q].
      run_gemm(handle,
               {CUBLAS_OP_N, CUBLAS_OP_N, D, len, len, s.scale, k + start * d.ldkv, dt, d.ldkv, d.D, ds + g * L * L,
                dt, L, d.group * L * L, 0.0f, dq + start * d.ldq + g * d.D, dt, d.ldq, d.group * d.D, Hkv},
               "cublasGemmStridedBatchedEx (naive dQ = dS K)");
    }
    offset += d.Hq * L * L;
  }
  if (kv_elems > 0) {
    const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((kv_elems + 255) / 256, 4096));
    auto to_storage = to_storage_kernel<T>;
    LLMLAB_LAUNCH(to_storage, blocks, 256, 0, stream)(dk_acc, static_cast<T*>(t.dk), kv_elems);
    check_cuda(cudaGetLastError(), "naive dk conversion kernel launch");
    LLMLAB_LAUNCH(to_storage, blocks, 256, 0, stream)(dv_acc, static_cast<T*>(t.dv), kv_elems);
    check_cuda(cudaGetLastError(), "naive dv conversion kernel launch");
  }
}

}  // namespace

std::size_t naive_saved_bytes(const AttentionShape& s, const std::int32_t* cu_seqlens_host) {
  std::size_t squares = 0;
  for (std::int64_t i = 0; i < s.docs; ++i) {
    const auto len = static_cast<std::size_t>(cu_seqlens_host[i + 1] - cu_seqlens_host[i]);
    squares += len * len;
  }
  return static_cast<std::size_t>(s.heads) * squares * 2;
}

std::size_t naive_backward_workspace_bytes(const AttentionShape& s, const std::int32_t* cu_seqlens_host) {
  const auto lmax = static_cast<std::size_t>(max_len(cu_seqlens_host, s.docs));
  const auto heads = static_cast<std::size_t>(s.heads);
  const auto kv_elems = static_cast<std::size_t>(s.tokens * s.kv_heads * s.head_dim);
  return align256(heads * lmax * lmax * sizeof(float)) + align256(heads * lmax * lmax * 2) +
         2 * align256(kv_elems * sizeof(float));
}

void naive_forward(const AttentionShape& s, const AttentionTensors& t, void* saved, void* stream_ptr) {
  flash::check_call(s, t, "naive_forward");
  if (!t.lse) throw Error("naive_forward: lse is null");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  flash::zero_outside_docs(t.out, t.cu_seqlens_host, s.docs, s.tokens, s.heads * s.head_dim, 2, stream,
                           "cudaMemsetAsync (naive forward padding)");
  flash::zero_lse_outside_docs(t.lse, t.cu_seqlens_host, s.docs, s.tokens, s.heads, stream);
  if (t.storage == Storage::bf16)
    forward_impl(s, t, static_cast<__nv_bfloat16*>(saved), stream, CUDA_R_16BF);
  else
    forward_impl(s, t, static_cast<__half*>(saved), stream, CUDA_R_16F);
}

void naive_backward(const AttentionShape& s, const AttentionTensors& t, const void* saved, void* workspace,
                    void* stream_ptr) {
  flash::check_call(s, t, "naive_backward");
  if (s.tokens > 0 && !workspace) throw Error("naive_backward: workspace is null");
  auto stream = static_cast<cudaStream_t>(stream_ptr);  // dk, dv padding: converted from zeroed accumulators
  if (t.storage == Storage::bf16)
    backward_impl(s, t, static_cast<const __nv_bfloat16*>(saved), workspace, stream, CUDA_R_16BF);
  else
    backward_impl(s, t, static_cast<const __half*>(saved), workspace, stream, CUDA_R_16F);
}

}  // namespace llmlab::cuda
