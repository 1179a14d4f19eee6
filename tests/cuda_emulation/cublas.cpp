// The emulated cuBLAS: cublasGemmStridedBatchedEx with bf16/fp16/fp32 operands, fp32 compute,
// column-major as cuBLAS defines it: C = alpha op(A) op(B) + beta C per batch, where op(X) is X
// or X^T, A is m x k after op, B k x n, C m x n with leading dimensions lda, ldb, ldc.
#include <cublas_v2.h>

#include <vector>

#include "emulator_state.hpp"

namespace {

float load(const void* base, cudaDataType type, long long index) {
  switch (type) {
    case CUDA_R_32F: return static_cast<const float*>(base)[index];
    case CUDA_R_16F: return llmlab::fp16_to_float(static_cast<const std::uint16_t*>(base)[index]);
    case CUDA_R_16BF: return llmlab::bf16_to_float(static_cast<const std::uint16_t*>(base)[index]);
  }
  return 0.0f;
}

void store(void* base, cudaDataType type, long long index, float value) {
  switch (type) {
    case CUDA_R_32F: static_cast<float*>(base)[index] = value; return;
    case CUDA_R_16F: static_cast<std::uint16_t*>(base)[index] = llmlab::float_to_fp16(value); return;
    case CUDA_R_16BF: static_cast<std::uint16_t*>(base)[index] = llmlab::float_to_bf16(value); return;
  }
}

std::size_t bytes_of(cudaDataType type) { return type == CUDA_R_32F ? 4 : 2; }

bool known(cudaDataType type) { return type == CUDA_R_32F || type == CUDA_R_16F || type == CUDA_R_16BF; }

// The element range a column-major matrix of `rows` x `cols` (stored, before op) spans.
bool covers(const void* base, cudaDataType type, long long rows, long long cols, long long ld, long long stride,
            int batch) {
  if (rows == 0 || cols == 0) return true;
  const long long last = (batch - 1) * stride + (cols - 1) * ld + rows - 1;
  return llmlab::emu::detail::in_device_allocation(base, static_cast<std::size_t>(last + 1) * bytes_of(type));
}

}  // namespace

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
  }
  return "unknown status";
}

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  static int token;
  *handle = reinterpret_cast<cublasHandle_t>(&token);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t) {
  return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void* alpha, const void* a, cudaDataType atype,
                                          int lda, long long stride_a, const void* b, cudaDataType btype, int ldb,
                                          long long stride_b, const void* beta, void* c, cudaDataType ctype, int ldc,
                                          long long stride_c, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (compute != CUBLAS_COMPUTE_32F || !known(atype) || !known(btype) || !known(ctype))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
  const int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) ||
      ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  if (!covers(a, atype, a_rows, a_cols, lda, stride_a, batch) || !covers(b, btype, b_rows, b_cols, ldb, stride_b, batch) ||
      !covers(c, ctype, m, n, ldc, stride_c, batch))
    llmlab::emu::detail::fail("cublasGemmStridedBatchedEx reaches outside its device allocations");
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  std::vector<float> arow(static_cast<std::size_t>(k));
  for (int p = 0; p < batch; ++p)
    for (int i = 0; i < m; ++i) {
      for (int l = 0; l < k; ++l)
        arow[static_cast<std::size_t>(l)] =
            load(a, atype, p * stride_a + (ta ? static_cast<long long>(i) * lda + l : static_cast<long long>(l) * lda + i));
      for (int j = 0; j < n; ++j) {
        float acc = 0.0f;
        for (int l = 0; l < k; ++l)
          acc += arow[static_cast<std::size_t>(l)] *
                 load(b, btype, p * stride_b + (tb ? static_cast<long long>(l) * ldb + j : static_cast<long long>(j) * ldb + l));
        const long long ci = p * stride_c + static_cast<long long>(j) * ldc + i;
        // beta = 0: C is not read (it may hold NaN), as in cuBLAS.
        store(c, ctype, ci, be == 0.0f ? al * acc : al * acc + be * load(c, ctype, ci));
      }
    }
  return CUBLAS_STATUS_SUCCESS;
}
