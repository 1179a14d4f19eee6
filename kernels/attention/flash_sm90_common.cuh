// Pieces the Hopper flash kernels (flash_forward_sm90.cu, flash_backward_sm90.cu) share: the
// mbarrier spin wait and the TMA tensor maps of [tokens, heads, D] tensors (128B swizzle, boxes
// of 64 columns: the layouts of sm90_ptx.cuh's header comment).
#pragma once

#include <cuda.h>
#ifndef LLMLAB_CUDA_EMULATION
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000 (the emulator's cuda.h has it)
#endif

#include <string>
#include <type_traits>

#include "kernels/attention/flash_common.cuh"
#include "kernels/attention/sm90_ptx.cuh"

namespace llmlab::cuda::flash {

__device__ __forceinline__ void wait_barrier(std::uint32_t bar, std::uint32_t parity) {
  while (!sm90::mbarrier_try_wait_parity(bar, parity)) {
  }
}

// cuTensorMapEncodeTiled from the driver, found through the runtime (no link against libcuda).
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult status{};
    check_cuda(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &status),
               "cudaGetDriverEntryPointByVersion (cuTensorMapEncodeTiled)");
    if (!fn || status != cudaDriverEntryPointSuccess)
      throw Error("flash (sm90): the CUDA driver has no cuTensorMapEncodeTiled (driver older than 12.0)");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// [tokens, heads, D] tensor, boxes of 64 columns x 1 head x box_rows rows, 128B swizzle; rows
// past the tensor's end read as zero.
template <typename T>
CUtensorMap make_tensor_map(const void* data, std::int64_t tokens, int heads, int head_dim, int box_rows) {
  CUtensorMap map{};
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(tokens)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(head_dim) * 2, static_cast<cuuint64_t>(heads) * head_dim * 2};
  const cuuint32_t box[3] = {64, 1, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult r = tensor_map_encoder()(
      &map, std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3,
      const_cast<void*>(data), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) throw Error("flash (sm90): cuTensorMapEncodeTiled failed (" + std::to_string(r) + ")");
  return map;
}

}  // namespace llmlab::cuda::flash
