// Pieces the Hopper flash kernels (flash_forward_sm90.cu, flash_backward_sm90.cu,
// flash_backward_dq_sm90.cu) share: the mbarrier spin wait, the TMA tensor maps of
// [tokens, heads, D] tensors (128B swizzle, boxes of 64 columns: the layouts of sm90_ptx.cuh's
// header comment), and the query-block kernels' producer (Q once, K and V per key block).
#pragma once

#include <cuda.h>
#ifndef LLMLAB_CUDA_EMULATION
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000 (the emulator's cuda.h has it)
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
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
//
// The driver rejects a CUtensorMap to encode that is not 64-byte aligned (CUDA_ERROR_INVALID_VALUE),
// and the type's alignas(64) is not enough: GCC 12 (-O3, the host compiler of both builds) has
// placed the temporary a returned map lands in on a 32-byte boundary (seen in the emulated build,
// whose cuTensorMapEncodeTiled checks it as the driver does). So the map is encoded in a buffer
// aligned by hand and returned by copy; a launch copies it into the kernel's parameters anyway.
template <typename T>
CUtensorMap make_tensor_map(const void* data, std::int64_t tokens, int heads, int head_dim, int box_rows) {
  unsigned char raw[sizeof(CUtensorMap) + 64] = {};
  auto* encoded = reinterpret_cast<CUtensorMap*>((reinterpret_cast<std::uintptr_t>(raw) + 63) & ~std::uintptr_t{63});
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(tokens)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(head_dim) * 2, static_cast<cuuint64_t>(heads) * head_dim * 2};
  const cuuint32_t box[3] = {64, 1, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult r = tensor_map_encoder()(
      encoded, std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3,
      const_cast<void*>(data), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) throw Error("flash (sm90): cuTensorMapEncodeTiled failed (" + std::to_string(r) + ")");
  CUtensorMap map;
  std::memcpy(&map, encoded, sizeof map);
  return map;
}

// What every warp-specialised Hopper kernel here is: one producer warpgroup and two consumer
// warpgroups (384 threads; setmaxnreg moves registers from the producer, 24, to the consumers,
// 240: 24 + 2 x 240 = 504 of the 512 a thread slot of a 384-thread CTA may hold), tiles of
// kBlockM query rows and kBlockN keys over D = kHeadDim columns stored as 64-column panels, and
// rings of two stages. Each kernel's traits add their shared-memory layout.
template <int kHeadDim_, typename Elem, int kBlockM_, int kBlockN_>
struct WarpSpecializedTraits {
  using T = Elem;
  static constexpr int kHeadDim = kHeadDim_, kBlockM = kBlockM_, kBlockN = kBlockN_, kStages = 2;
  static constexpr int kConsumerWarpgroups = 2, kThreads = 128 * (kConsumerWarpgroups + 1);
  static constexpr int kProducerRegs = 24, kConsumerRegs = 240;
  static constexpr int kPanels = kHeadDim / 64;  // 64-column (128-byte) panels of a [rows][D] tile
  static constexpr int kQBytes = kBlockM * kHeadDim * 2;   // one Q (or dO) tile
  static constexpr int kKVBytes = kBlockN * kHeadDim * 2;  // one K (or V) tile
  static constexpr int kNTiles = kBlockN / 8, kDTiles = kHeadDim / 8;
  static_assert(kHeadDim % 64 == 0, "D in whole 64-column panels");
};

// The TMA descriptors of a launch: Q (and with_dout, dO) in boxes of Tr::kBlockM rows, K and V
// of Tr::kBlockN.
template <typename Tr>
struct TensorMaps {
  CUtensorMap q, k, v, dout;
  TensorMaps(const Params& p, bool with_dout) {
    using T = typename Tr::T;
    q = make_tensor_map<T>(p.q, p.tokens, p.heads, Tr::kHeadDim, Tr::kBlockM);
    k = make_tensor_map<T>(p.k, p.tokens, p.kv_heads, Tr::kHeadDim, Tr::kBlockN);
    v = make_tensor_map<T>(p.v, p.tokens, p.kv_heads, Tr::kHeadDim, Tr::kBlockN);
    dout = with_dout ? make_tensor_map<T>(p.dout, p.tokens, p.heads, Tr::kHeadDim, Tr::kBlockM) : CUtensorMap{};
  }
};

// Launches a warp-specialised kernel (Tr::kThreads threads, Tr::kSmemBytes of dynamic shared
// memory, past the 48 KB default) on `grid`; `what` names it in errors.
template <typename Tr, typename... KernelParams, typename... Args>
void launch_warp_specialized(void (*kernel)(KernelParams...), dim3 grid, cudaStream_t stream, const char* what,
                             const Args&... args) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes),
             (std::string(what) + ": cudaFuncSetAttribute (shared memory)").c_str());
  LLMLAB_LAUNCH(kernel, grid, Tr::kThreads, Tr::kSmemBytes, stream)(args...);
  check_cuda(cudaGetLastError(), (std::string(what) + " kernel launch").c_str());
}

// The two wgmma loops the Hopper kernels are made of, on [rows][D] tiles stored as 64-column
// panels (128B-swizzled, rows * 128 bytes each; sm90_ptx.cuh's layouts). Both only issue: the
// caller fences, commits and waits.
//
// acc = A B^T over the D columns (scores: S = Q K^T, dP = dO V^T, and their transposes): A is the
// 64 rows at a_rows of a tile of kARows rows a panel, B the N rows at b_rows of a tile of kBRows
// rows a panel, both K-major; k-step ks is panel ks / 4, 32 bytes (16 columns) further each.
template <typename T, int N, int D, int kARows, int kBRows, int R>
__device__ __forceinline__ void mma_rows_by_rows(float (&acc)[R], std::uint32_t a_rows, std::uint32_t b_rows) {
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const std::uint32_t a_offset = (ks / 4) * kARows * 128 + (ks % 4) * 32;
    const std::uint32_t b_offset = (ks / 4) * kBRows * 128 + (ks % 4) * 32;
    sm90::Wgmma<T, N>::template ss<0>(acc, sm90::make_desc_sw128(a_rows + a_offset, 16, 1024),
                                      sm90::make_desc_sw128(b_rows + b_offset, 16, 1024), ks > 0 ? 1 : 0);
  }
}

// acc += A B over kK rows of B (O += P V, dV += P^T dO, dK += dS^T Q, dQ += dS K): A from
// registers (a[ks]: the A fragments of k-step ks), B the tile at b_tile of kK rows and N = D
// columns, read MN-major: k-step ks's 16 rows start at row 16 ks (two 8-row groups, SBO apart),
// the columns' panels are LBO = kK * 128 bytes apart.
template <typename T, int N, int kK, int R>
__device__ __forceinline__ void mma_fragments_by_tile(float (&acc)[R], const std::uint32_t (&a)[kK / 16][4],
                                                      std::uint32_t b_tile) {
#pragma unroll
  for (int ks = 0; ks < kK / 16; ++ks)
    sm90::Wgmma<T, N>::template rs<1>(acc, a[ks], sm90::make_desc_sw128(b_tile + ks * 16 * 128, kK * 128, 1024), 1);
}

// acc = A B over kK rows of both tiles, A and B read MN-major from [kK][..] tiles (dQ = dS K: A =
// dS from the [key][query] dS^T tile, its 64 m = query columns in one panel; B = K's columns from
// b_cols, panels kK * 128 bytes apart): k-step ks's 16 rows start at row 16 ks of both.
template <typename T, int N, int kK, int R>
__device__ __forceinline__ void mma_tile_by_tile(float (&acc)[R], std::uint32_t a_tile, std::uint32_t b_cols) {
#pragma unroll
  for (int ks = 0; ks < kK / 16; ++ks)
    sm90::Wgmma<T, N>::template ss<1, 1>(acc, sm90::make_desc_sw128(a_tile + ks * 16 * 128, kK * 128, 1024),
                                         sm90::make_desc_sw128(b_cols + ks * 16 * 128, kK * 128, 1024), ks > 0 ? 1 : 0);
}

// Shared address of column `col` (a multiple of 8) of row 0 in a [kRows][D] tile stored as
// 64-column panels: an MMA operand's first column (B of mma_tile_by_tile).
template <int kRows>
__device__ __forceinline__ std::uint32_t panel_column(std::uint32_t tile, int col) {
  return tile + static_cast<std::uint32_t>((col / 64) * kRows * 128 + (col % 64) * 2);
}

// A fragments (the mma.m16n8k16 A layout of rows row0 + 0..15, k-step ks = columns 16 ks..+15)
// stored as rows of a 64-column 128B-swizzled tile (128-byte rows, 16-byte chunk c of row r at
// c ^ (r % 8); row0 % 8 == 0, so r % 8 = g), where an MMA reads them MN-major (dS^T for dQ = dS K).
// Generic-proxy stores (st.shared): the caller fences (fence_proxy_async) before a wgmma reads them.
template <int kKSteps>
__device__ __forceinline__ void store_fragments_sw128(std::uint32_t tile, const std::uint32_t (&a)[kKSteps][4],
                                                      int row0, int g, int t4) {
  static_assert(kKSteps * 16 <= 64, "one 64-column panel");
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int row = row0 + g + 8 * (r % 2), chunk = 2 * ks + r / 2;
      sm90::st_shared_u32(tile + static_cast<std::uint32_t>(row * 128 + ((chunk ^ g) << 4) + 4 * t4), a[ks][r]);
    }
}

// The mbarriers of a query-block kernel (the forward, the deterministic dQ): Q (and dO) per
// query tile, full (landed) and empty (every consumer warp is done with it: a persistent CTA's
// next tile may load), then a ring of kStages K and V buffers, each with a full barrier (the
// TMA's bytes have landed) and an empty one (every consumer warp is done with it). K and V have
// their own, since consumers are done with K and V at different times. Tr: kStages,
// kConsumerWarpgroups.
template <typename Tr>
struct QkvRingBarriers {
  static constexpr int kBytes = 8 * (2 + 4 * Tr::kStages);
  std::uint32_t base;  // kBytes of shared memory, 8-byte aligned
  __device__ __forceinline__ std::uint32_t q_full() const { return base; }
  __device__ __forceinline__ std::uint32_t k_full(int s) const { return base + 8 * (1 + s); }
  __device__ __forceinline__ std::uint32_t v_full(int s) const { return base + 8 * (1 + Tr::kStages + s); }
  __device__ __forceinline__ std::uint32_t k_empty(int s) const { return base + 8 * (1 + 2 * Tr::kStages + s); }
  __device__ __forceinline__ std::uint32_t v_empty(int s) const { return base + 8 * (1 + 3 * Tr::kStages + s); }
  __device__ __forceinline__ std::uint32_t q_empty() const { return base + 8 * (1 + 4 * Tr::kStages); }
  // By one thread, before the __syncthreads that publishes them.
  __device__ __forceinline__ void init() const {
    sm90::mbarrier_init(q_full(), 1);
    sm90::mbarrier_init(q_empty(), 4 * Tr::kConsumerWarpgroups);  // one arrival per consumer warp
    for (int s = 0; s < Tr::kStages; ++s) {
      sm90::mbarrier_init(k_full(s), 1);
      sm90::mbarrier_init(v_full(s), 1);
      sm90::mbarrier_init(k_empty(s), 4 * Tr::kConsumerWarpgroups);  // one arrival per consumer warp
      sm90::mbarrier_init(v_empty(s), 4 * Tr::kConsumerWarpgroups);
    }
    sm90::fence_barrier_init();
  }
};

// A query tile of a persistent kernel: rows block .. block + kRows - 1 of head h of the document
// whose first token is `start` and whose length is `len`.
struct Tile {
  int block = 0, h = 0, start = 0, len = 0;
};

// The query tiles of a persistent kernel, blocks of kRows queries x heads x documents, numbered
// block slowest and from the last one, then document, then head: under the causal mask the tiles
// with the most work (the last blocks see the most keys) come first, the longest-processing-time
// order, which balances CTAs that take tiles in turn; the heads of a document are neighbours, so
// CTAs running side by side share its K and V in L2. A tile whose block starts past its
// document's end is empty; every role skips it alike. Static functions of the launch's Params,
// which stay in the constant bank instead of taking registers the consumers need.
template <int kRows>
struct QueryTiles {
  // A persistent launch's grid: one CTA per multiprocessor (one fits, by registers: 384 threads
  // at 168), none without a tile. The tiles are numbered in an int.
  static dim3 grid(const Params& p) {
    const std::int64_t n = static_cast<std::int64_t>((p.max_seqlen + kRows - 1) / kRows) * p.heads * p.docs;
    if (n > std::numeric_limits<int>::max())
      throw Error("flash (sm90): " + std::to_string(n) + " query tiles exceed a launch's tile numbering");
    return dim3(static_cast<unsigned>(std::min<std::int64_t>(n, multiprocessor_count())));
  }
  __device__ __forceinline__ static int count(const Params& p) {
    return (p.max_seqlen + kRows - 1) / kRows * p.heads * p.docs;
  }
  // The first non-empty tile among t, t + stride, ... (into `tile`); count(p) when there is none.
  __device__ __forceinline__ static int first_valid(const Params& p, int t, int stride, Tile& tile) {
    const int blocks = (p.max_seqlen + kRows - 1) / kRows, n = blocks * p.heads * p.docs;
    for (; t < n; t += stride) {
      const int x = t / (p.heads * p.docs), rest = t % (p.heads * p.docs), doc = rest / p.heads;
      tile.h = rest % p.heads;
      tile.start = p.cu_seqlens[doc];
      tile.len = p.cu_seqlens[doc + 1] - tile.start;
      tile.block = (blocks - 1 - x) * kRows;
      if (tile.block < tile.len) return t;
    }
    return n;
  }
};

// Where a CTA's rings stand before a tile: the tiles and the ring slots (K/V blocks, or Q/dO
// steps) it has used before (a persistent CTA's tiles share the rings, so phases carry over from
// tile to tile).
struct RingPosition {
  int tile = 0, block = 0;
  // The phase parity of the Q barriers for this tile; the stage and phase parity of its key block j.
  __device__ __forceinline__ std::uint32_t q_parity() const { return static_cast<std::uint32_t>(tile & 1); }
  template <int kStages>
  __device__ __forceinline__ int stage(int j) const {
    return (block + j) % kStages;
  }
  template <int kStages>
  __device__ __forceinline__ std::uint32_t parity(int j) const {
    return static_cast<std::uint32_t>(((block + j) / kStages) & 1);
  }
};

// The producer's elected thread of a query-block kernel, for one query tile at ring position
// `at`: once every consumer warp has released the previous tile's Q, the kBlockM query rows from
// q_row of head h (Q, and dO when do_map is given, into sQ / sdO), then key block j of kv head
// kvh (rows kv_row0 + j kBlockN) into its stage: its K once every consumer warp has released the
// stage's previous K (kStages blocks earlier), then its V likewise. Tr: kBlockM, kBlockN,
// kStages, kPanels (64-column panels of D), kQBytes (one [kBlockM][D] tile), kKVBytes (one
// [kBlockN][D]).
template <typename Tr>
__device__ __forceinline__ void produce_q_then_kv(const CUtensorMap& q_map, const CUtensorMap* do_map,
                                                  const CUtensorMap& k_map, const CUtensorMap& v_map,
                                                  const QkvRingBarriers<Tr>& bars, std::uint32_t sQ,
                                                  std::uint32_t sdO, std::uint32_t sK, std::uint32_t sV, int q_row,
                                                  int h, int kv_row0, int kvh, int n_blocks, RingPosition at) {
  if (at.tile == 0) {
    sm90::prefetch_tensormap(&q_map);
    if (do_map) sm90::prefetch_tensormap(do_map);
    sm90::prefetch_tensormap(&k_map);
    sm90::prefetch_tensormap(&v_map);
  }
  wait_barrier(bars.q_empty(), at.q_parity() ^ 1u);  // a fresh barrier passes parity 1: the first tile
  sm90::mbarrier_arrive_expect_tx(bars.q_full(), do_map ? 2 * Tr::kQBytes : Tr::kQBytes);
#pragma unroll
  for (int panel = 0; panel < Tr::kPanels; ++panel) {
    sm90::tma_load_3d(sQ + panel * Tr::kBlockM * 128, &q_map, panel * 64, h, q_row, bars.q_full());
    if (do_map) sm90::tma_load_3d(sdO + panel * Tr::kBlockM * 128, do_map, panel * 64, h, q_row, bars.q_full());
  }
  for (int j = 0; j < n_blocks; ++j) {
    const int s = at.stage<Tr::kStages>(j);
    const std::uint32_t phase = at.parity<Tr::kStages>(j);
    const int row = kv_row0 + j * Tr::kBlockN;
    const std::uint32_t k_stage = sK + s * Tr::kKVBytes, v_stage = sV + s * Tr::kKVBytes;
    wait_barrier(bars.k_empty(s), phase ^ 1u);  // a fresh barrier passes parity 1: the first round
    sm90::mbarrier_arrive_expect_tx(bars.k_full(s), Tr::kKVBytes);
#pragma unroll
    for (int panel = 0; panel < Tr::kPanels; ++panel)
      sm90::tma_load_3d(k_stage + panel * Tr::kBlockN * 128, &k_map, panel * 64, kvh, row, bars.k_full(s));
    wait_barrier(bars.v_empty(s), phase ^ 1u);
    sm90::mbarrier_arrive_expect_tx(bars.v_full(s), Tr::kKVBytes);
#pragma unroll
    for (int panel = 0; panel < Tr::kPanels; ++panel)
      sm90::tma_load_3d(v_stage + panel * Tr::kBlockN * 128, &v_map, panel * 64, kvh, row, bars.v_full(s));
  }
}

// The producer's elected thread of a persistent query-block kernel: this CTA's query tiles
// (QueryTiles<Tr::kBlockM>: blockIdx.x, + gridDim.x, ...) one after the other, each through
// produce_q_then_kv at the ring position the tiles before it leave.
template <typename Tr, bool kCausal>
__device__ __forceinline__ void produce_query_tiles(const Params& p, const CUtensorMap& q_map,
                                                    const CUtensorMap* do_map, const CUtensorMap& k_map,
                                                    const CUtensorMap& v_map, const QkvRingBarriers<Tr>& bars,
                                                    std::uint32_t sQ, std::uint32_t sdO, std::uint32_t sK,
                                                    std::uint32_t sV) {
  using Tiles = QueryTiles<Tr::kBlockM>;
  const int stride = static_cast<int>(gridDim.x);
  Tile tile;
  RingPosition at;
  for (int t = Tiles::first_valid(p, static_cast<int>(blockIdx.x), stride, tile); t < Tiles::count(p);
       t = Tiles::first_valid(p, t + stride, stride, tile)) {
    const int n_blocks = visible_key_blocks<Tr::kBlockM, Tr::kBlockN, kCausal>(tile.block, tile.len);
    produce_q_then_kv<Tr>(q_map, do_map, k_map, v_map, bars, sQ, sdO, sK, sV, tile.start + tile.block, tile.h,
                          tile.start, tile.h / p.group, n_blocks, at);
    ++at.tile;
    at.block += n_blocks;
  }
}

}  // namespace llmlab::cuda::flash
