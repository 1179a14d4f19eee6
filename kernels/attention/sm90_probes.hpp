// Hopper's primitives one at a time, exactly as the sm90 flash kernels use them: a TMA box as it
// lands in shared memory, and each wgmma loop of flash_sm90_common.cuh on tiles the TMA (or the
// kernels' own swizzled stores) put there. Each probe runs one CTA of one warpgroup on device 0
// and returns what the hardware produced, so that a test can hold it against plain arithmetic
// (tests/cuda/test_sm90_probes.cpp). When a whole kernel is wrong on a GPU, these say which of its
// assumptions (swizzle, descriptor, fragment layout, proxy fence) is, in the same run; on the CPU
// emulator they check the emulator and the kernels' conventions against the same arithmetic.
//
// Inputs are 16-bit patterns of `storage` (bf16 or fp16), row-major; outputs are row-major.
// Every probe needs a device of compute capability 9.x and sm_90a in the build
// (resolve_flash_kernel(automatic) == sm90), else it throws.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/attention/attention_cuda.hpp"

namespace llmlab::cuda::probe {

// The shared-memory bytes of one TMA load of `tensor` ([tokens][heads][head_dim]) as the
// kernels' tensor maps make it (boxes of 64 columns x 1 head x box_rows rows, 128B swizzle):
// head_dim / 64 panels of box_rows x 128 bytes, panel p holding columns 64 p.., from token `row`
// of head `head` (rows past the end read as zero). box_rows: 64 or 128.
std::vector<std::uint8_t> tma_box(Storage storage, const std::vector<std::uint16_t>& tensor, int tokens, int heads,
                                  int head_dim, int box_rows, int row, int head);

// mma_rows_by_rows (S = Q K^T and kin): acc[64][n] = A[a_row0 + m][:] . B[j][:], A [128][head_dim]
// and B [n][head_dim] each one TMA load. n: 64 or 128; a_row0: 0 or 64; head_dim: 64 or 128.
std::vector<float> rows_by_rows(Storage storage, int head_dim, int n, int a_row0, const std::vector<std::uint16_t>& a,
                                const std::vector<std::uint16_t>& b);

// mma_fragments_by_tile (O += P V and kin): acc[64][head_dim] = A B with A [64][k] in registers
// (mma.m16n8k16 A fragments, loaded per thread) and B [k][head_dim] one TMA load read MN-major.
// k: 64 or 128.
std::vector<float> fragments_by_tile(Storage storage, int head_dim, int k, const std::vector<std::uint16_t>& a,
                                     const std::vector<std::uint16_t>& b);

// mma_tile_by_tile (the atomic backward's dQ = dS K): a_t = A^T [128][64] held as A fragments by
// the warpgroup, stored by store_fragments_sw128 into a swizzled tile (then fence.proxy.async),
// B [128][head_dim] one TMA load; acc[64][head_dim / 2] = A B[:, col0 ..], both read MN-major.
// col0: 0 or head_dim / 2 (the two consumers' shares).
std::vector<float> tile_by_tile(Storage storage, int head_dim, int col0, const std::vector<std::uint16_t>& a_t,
                                const std::vector<std::uint16_t>& b);

}  // namespace llmlab::cuda::probe
