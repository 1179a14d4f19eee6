// Flash backward's deterministic dQ (FlashAttention's deterministic mode): instead of every
// key-block CTA adding its share of dQ with fp32 atomics, one CTA per (query block, q head,
// document) recomputes, for each key block it can see, S = Q K^T, P = exp(scale S - lse),
// dP = dO V^T and dS = P (dP - Drow), and sums dQ += dS K over the key blocks in a fixed order in
// registers; dq = scale * dQ is written once per element. Structured like forward_kernel (same
// grid, K/V double buffer, causal skipping and masking); lse comes from the forward and Drow
// from backward's preprocess kernel (flash_backward.cu).
#include <type_traits>

#include "kernels/attention/flash_common.cuh"

namespace llmlab::cuda {
namespace flash {
namespace {

// Tile sizes per head dim: 4 warps, kBlockM = 64 query rows (16 a warp), kBlockN keys a step.
// A thread holds dQ (D/2 floats), S and dP (kBlockN/2 floats each) and, loaded once because the
// query tile meets every key block, the A fragments of Q and dO (D/4 registers each):
//   D = 64:  kBlockN = 64: 32 + 2 x 32 + 2 x 16 = 128 registers of tiles; ptxas: 168 registers
//            (225 causal), no spills; smem Q, dO 2 x 8 KB + K, V 2 x 2 x 8 KB = 48 KB.
//   D = 128: kBlockN = 32: 64 + 2 x 16 + 2 x 32 = 160 registers of tiles; ptxas: 237 registers
//            (240 causal), no spills; smem Q, dO 2 x 16 KB + K, V 2 x 2 x 8 KB = 64 KB.
// (sm_90, CUDA 13, -Xptxas -v, bf16 and fp16 alike.) Registers allow at least two CTAs per SM.
// Not tried: 128 query rows (dQ, S, dP double: 256 registers of tiles at D = 64) and 64 keys at
// D = 128 (S, dP: +32 registers over the 237 measured, spills likely unless dO's fragments are
// re-read from shared memory, as forward does with Q at D = 128). With one m-tile a warp, every
// K or V fragment feeds one MMA: 0.5 ldmatrix.x4 per MMA. Written without a GPU, so none of
// this is timed.
template <int kHeadDim_, int kBlockN_, typename Elem>
struct DqTraits {
  using T = Elem;
  static constexpr int kHeadDim = kHeadDim_, kBlockM = 64, kBlockN = kBlockN_;
  static constexpr int kNWarps = 4, kThreads = kNWarps * 32;
  static constexpr int kWarpRows = kBlockM / kNWarps, kMTiles = kWarpRows / 16;
  static constexpr int kKSteps = kHeadDim / 16;  // k-steps of Q K^T and dO V^T
  static constexpr int kNTiles = kBlockN / 8;    // n-tiles of S, dP
  static constexpr int kDTiles = kHeadDim / 8;   // n-tiles of dQ
  static constexpr int kSmemBytes = 2 * (2 * kBlockM * kHeadDim + 4 * kBlockN * kHeadDim);  // Q, dO, 2 K, 2 V
  static_assert(kWarpRows % 16 == 0 && kBlockN % 16 == 0, "tiles");
};

template <typename Tr, bool kCausal>
__global__ void __launch_bounds__(Tr::kThreads) backward_dq_kernel(const Params p) {
  using T = typename Tr::T;
  constexpr int D = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN;
  constexpr int kMTiles = Tr::kMTiles, kNTiles = Tr::kNTiles, kDTiles = Tr::kDTiles, kKSteps = Tr::kKSteps;
  T* sQ = reinterpret_cast<T*>(dynamic_smem());  // [kBlockM][D]
  T* sdO = sQ + kBlockM * D;               // [kBlockM][D]
  T* sK = sdO + kBlockM * D;               // [2][kBlockN][D]
  T* sV = sK + 2 * kBlockN * D;            // [2][kBlockN][D]

  const int doc = static_cast<int>(blockIdx.z), h = static_cast<int>(blockIdx.y);
  const int start = p.cu_seqlens[doc], len = p.cu_seqlens[doc + 1] - start;
  const int qb = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kBlockM;  // longest (causal) work first, as forward
  if (qb >= len) return;
  const int kvh = h / p.group;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t4 = lane % 4;
  const int warp_row0 = warp * Tr::kWarpRows;  // first row of this warp within the block

  const std::int64_t q_off = (static_cast<std::int64_t>(start) + qb) * p.q_row_stride + h * p.q_head_stride;
  const std::int64_t kv_off = static_cast<std::int64_t>(start) * p.kv_row_stride + kvh * p.kv_head_stride;
  const T* kg = static_cast<const T*>(p.k) + kv_off;
  const T* vg = static_cast<const T*>(p.v) + kv_off;
  const int n_blocks = visible_key_blocks<kBlockM, kBlockN, kCausal>(qb, len);

  load_tile_async<kBlockM, D, Tr::kThreads>(sQ, static_cast<const T*>(p.q) + q_off, p.q_row_stride, len - qb);
  load_tile_async<kBlockM, D, Tr::kThreads>(sdO, static_cast<const T*>(p.dout) + q_off, p.q_row_stride, len - qb);
  load_kv_async<kBlockN, D, Tr::kThreads>(sK, sV, kg, vg, p.kv_row_stride, 0, len);
  cp_async_commit();

  // lse (times log2(e), as backward_kernel keeps it) and Drow of rows warp_row0 + 16 mi + g + 8 rh;
  // a row past the document's end gets lse = +inf, so its P is 0 whatever its scores.
  float lse_log2[kMTiles][2], drow[kMTiles][2];
  float dq[kMTiles][kDTiles][4];  // unscaled dQ: row warp_row0 + 16 mi + g + 8 (e / 2), column 8 dn + 2 t4 + e % 2
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi) {
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      const int row = qb + warp_row0 + mi * 16 + g + 8 * rh;
      const bool valid = row < len;
      const std::int64_t i = h * p.lse_head_stride + start + row;
      lse_log2[mi][rh] = valid ? p.lse[i] * kLog2e : INFINITY;
      drow[mi][rh] = valid ? p.drow[i] : 0.0f;
    }
#pragma unroll
    for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
      for (int e = 0; e < 4; ++e) dq[mi][dn][e] = 0.0f;
  }

  // ldmatrix lane addresses (flash_common.cuh): Q, dO as A (row l % 16, chunk l / 16); K, V as B
  // ([key][d] = [n][k]: row (l%8) + 8(l/16), chunk (l/8)%2); K as B with .trans for dQ ([key][d] =
  // [k][n]: row (l%8) + 8((l/8)%2), chunk l/16).
  const LdsmLane<D> a_lane(lane % 16, lane / 16), b_lane(lane % 8 + 8 * (lane / 16), (lane / 8) % 2),
      bt_lane(lane % 8 + 8 * ((lane / 8) % 2), lane / 16);
  const std::uint32_t sQ_u32 = smem_u32(sQ), sdO_u32 = smem_u32(sdO), sK_u32 = smem_u32(sK), sV_u32 = smem_u32(sV);
  std::uint32_t qf[kMTiles][kKSteps][4], dof[kMTiles][kKSteps][4];  // filled once Q, dO have landed

  for (int j = 0; j < n_blocks; ++j) {
    const int buf = j & 1, kb = j * kBlockN;
    begin_kv_block<kBlockN, D, Tr::kThreads>(sK, sV, kg, vg, p.kv_row_stride, len, j, n_blocks);  // and Q, dO
    if (j == 0) {
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
        for (int ks = 0; ks < kKSteps; ++ks) {
          const int off = 2 * a_lane.at(warp_row0 + mi * 16, 2 * ks);
          ldmatrix_x4(qf[mi][ks], sQ_u32 + off);
          ldmatrix_x4(dof[mi][ks], sdO_u32 + off);
        }
    }
    // Causal: a warp whose last row is above this block's first key sees none of it.
    const bool warp_visible = !kCausal || kb <= qb + warp_row0 + Tr::kWarpRows - 1;
    if (warp_visible) {
      const std::uint32_t k_tile = sK_u32 + buf * kBlockN * D * 2, v_tile = sV_u32 + buf * kBlockN * D * 2;
      // S = Q K^T and dP = dO V^T: s[mi][nj][e], dp[mi][nj][e] are row warp_row0 + 16 mi + g + 8 (e / 2),
      // key kb + 8 nj + 2 t4 + e % 2.
      float s[kMTiles][kNTiles][4], dp[kMTiles][kNTiles][4];
      warp_mma_abt<T, kKSteps>(
          s,
          [&](std::uint32_t(&a)[4], int mi, int ks) {
#pragma unroll
            for (int r = 0; r < 4; ++r) a[r] = qf[mi][ks][r];
          },
          k_tile, b_lane);
      warp_mma_abt<T, kKSteps>(
          dp,
          [&](std::uint32_t(&a)[4], int mi, int ks) {
#pragma unroll
            for (int r = 0; r < 4; ++r) a[r] = dof[mi][ks][r];
          },
          v_tile, b_lane);
      // P = exp2(scale_log2 S - lse log2(e)), 0 where masked (-inf) or past the document's end;
      // dS = P (dP - Drow) in place of S.
      mask_scores<kCausal>(s, qb + warp_row0, kb, len, g, t4);
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
        for (int nj = 0; nj < kNTiles; ++nj)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float pr = exp2f(fmaf(s[mi][nj][e], p.scale_log2, -lse_log2[mi][e / 2]));
            s[mi][nj][e] = pr * (dp[mi][nj][e] - drow[mi][e / 2]);
          }
      // dQ += dS K: dS's C fragments become A fragments as forward's P does; K is B with .trans.
      warp_mma_cb<T>(dq, s, k_tile, bt_lane);
    }
    __syncthreads();  // every warp is done with buffer buf before block j + 2 is loaded into it
  }

  // dq = scale * dQ in the storage type, rows inside the document only.
  T* dqg = static_cast<T*>(p.dq) + q_off;
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      const int row = warp_row0 + mi * 16 + g + 8 * rh;
      if (qb + row < len) {
        T* dst = dqg + static_cast<std::int64_t>(row) * p.q_row_stride + 2 * t4;
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
          *reinterpret_cast<std::uint32_t*>(dst + dn * 8) =
              pack2<T>(dq[mi][dn][2 * rh] * p.scale, dq[mi][dn][2 * rh + 1] * p.scale);
      }
    }
}

template <typename Tr, bool kCausal>
void launch_backward_dq(const Params& p, cudaStream_t stream) {
  auto kernel = backward_dq_kernel<Tr, kCausal>;
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes),
             "cudaFuncSetAttribute (flash backward dq shared memory)");
  LLMLAB_LAUNCH(kernel, query_block_grid(p, Tr::kBlockM), Tr::kThreads, Tr::kSmemBytes, stream)(p);
  check_cuda(cudaGetLastError(), "flash backward dq kernel launch");
}

}  // namespace

void backward_dq(const Params& p, Storage storage, bool causal, cudaStream_t stream) {
  LLMLAB_KERNEL_SWITCH(storage, p.head_dim, causal, [&] {
    using Tr = std::conditional_t<kHeadDim == 64, DqTraits<64, 64, elem_type>, DqTraits<128, 32, elem_type>>;
    launch_backward_dq<Tr, kCausal>(p, stream);
  });
}

}  // namespace flash
}  // namespace llmlab::cuda
