// The deterministic dQ for Hopper: flash_backward_dq.cu's mathematics and contract (one CTA per
// query block recomputes, for each key block it can see, S = Q K^T, P = exp2(S scale log2(e) -
// lse log2(e)), dP = dO V^T and dS = P (dP - Drow), and sums dQ += dS K over the key blocks in a
// fixed order in registers; dq = scale * dQ written once per element), on the forward's Hopper
// structure (flash_forward_sm90.cu): one producer warpgroup whose elected thread brings Q and dO in
// once and K, V per key block into a ring of kStages by TMA (flash_sm90_common.cuh's
// produce_q_then_kv), and two consumer warpgroups of 64 query rows each on wgmma:
//   S = Q K^T, dP = dO V^T       SS m64n64k16 (Q, dO, K, V rows K-major)
//   dQ += dS K                   RS m64nDk16 (dS from registers, K read MN-major, as the
//                                forward reads V for P V)
// It runs after backward_sm90's kernel without dQ (dK, dV) in the deterministic mode.
//
// Tiles: 128 query rows x 64 keys. Registers per consumer thread: dQ D/2, S and dP 32 each fp32,
// dS 16 (128 keys would take S + dP to 128 registers beside dQ's 64 at D = 128). Shared memory:
// Q, dO (2 x 128 x D), 2 stages of K and V (4 x 64 x D): 129 KB (D = 128), 65 KB (D = 64).
// Causal: a consumer whose rows are all above a key block skips its MMAs but still takes the
// stage's barriers, so that both consumers' phases stay in step. Persistent, as the forward (one
// CTA per multiprocessor over QueryTiles, the next tile's Q and dO loading once every consumer
// warp's last S and dP are done).
// Not done: the forward's ping-pong and intra-warpgroup overlap (here each consumer waits for its
// S and dP before computing dS). Written without a GPU: tested on the CPU emulator, not timed.
#include "kernels/attention/flash_common.cuh"
#include "kernels/attention/flash_sm90_common.cuh"
#include "kernels/attention/sm90_ptx.cuh"

namespace llmlab::cuda {
namespace flash {
namespace {

template <int kHeadDim_, typename Elem>
struct Sm90DqTraits : WarpSpecializedTraits<kHeadDim_, Elem, 128, 64> {
  using Base = WarpSpecializedTraits<kHeadDim_, Elem, 128, 64>;
  // Offsets from the 1024-byte-aligned base: Q, dO, K stages, V stages, then the mbarriers.
  static constexpr int kDoOffset = Base::kQBytes, kKOffset = 2 * Base::kQBytes;
  static constexpr int kVOffset = kKOffset + Base::kStages * Base::kKVBytes;
  static constexpr int kBarOffset = kVOffset + Base::kStages * Base::kKVBytes;
  static constexpr int kSmemBytes = kBarOffset + 8 * (2 + 4 * Base::kStages) + 1024;  // QkvRingBarriers, slack to align
};

template <typename Tr, bool kCausal>
__global__ void __launch_bounds__(Tr::kThreads, 1)
    backward_dq_sm90_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                            const __grid_constant__ CUtensorMap v_map, const __grid_constant__ CUtensorMap do_map,
                            const Params p) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();  // a device pass for a target without wgmma (not sm_90a): never launched there
#else
  using T = typename Tr::T;
  constexpr int D = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kStages = Tr::kStages;
  constexpr int kNTiles = Tr::kNTiles, kDTiles = Tr::kDTiles;

  const std::uint32_t base = (smem_u32(dynamic_smem()) + 1023u) & ~1023u;  // swizzle atoms: 1024-aligned
  const std::uint32_t sQ = base, sdO = base + Tr::kDoOffset, sK = base + Tr::kKOffset, sV = base + Tr::kVOffset;
  const QkvRingBarriers<Tr> bars{base + Tr::kBarOffset};
  const int tid = static_cast<int>(threadIdx.x), warpgroup = tid / 128;
  if (tid == 0) bars.init();
  __syncthreads();

  // Persistent, as the forward: CTA c takes query tiles c, c + gridDim.x, ... (QueryTiles), the
  // rings' phases carrying over from tile to tile.
  if (warpgroup == 0) {
    sm90::setmaxnreg_dec<Tr::kProducerRegs>();
    if (tid == 0) produce_query_tiles<Tr, kCausal>(p, q_map, &do_map, k_map, v_map, bars, sQ, sdO, sK, sV);
    return;
  }
  sm90::setmaxnreg_inc<Tr::kConsumerRegs>();

  const int consumer = warpgroup - 1, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  // This warpgroup's Q and dO rows: K-major slices of 16 columns (k-step ks: panel ks / 4, +32 bytes each).
  const std::uint32_t q_rows = sQ + consumer * 64 * 128, do_rows = sdO + consumer * 64 * 128;
  auto release = [&](std::uint32_t bar) {  // wgmma.wait_group is warp-synchronous: one arrival per warp
    if (lane == 0) sm90::mbarrier_arrive(bar);
  };
  using Tiles = QueryTiles<kBlockM>;
  const int stride = static_cast<int>(gridDim.x);
  Tile tile;
  RingPosition at;
  for (int t = Tiles::first_valid(p, static_cast<int>(blockIdx.x), stride, tile); t < Tiles::count(p);
       t = Tiles::first_valid(p, t + stride, stride, tile)) {
    const int start = tile.start, len = tile.len, h = tile.h;
    const int n_blocks = visible_key_blocks<kBlockM, kBlockN, kCausal>(tile.block, len);
    const int row0 = tile.block + consumer * 64 + warp * 16;  // this warp's first query row within the document
    const int last_row = tile.block + consumer * 64 + 63;     // this warpgroup's last
    // lse (times log2(e)) and Drow of rows row0 + g + 8 rh; a row past the document's end gets
    // lse = +inf, so its P is 0 whatever its scores.
    float lse_log2[2], drow[2];
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      const int row = row0 + g + 8 * rh;
      const bool valid = row < len;
      const std::int64_t i = h * p.lse_head_stride + start + row;
      lse_log2[rh] = valid ? p.lse[i] * kLog2e : INFINITY;
      drow[rh] = valid ? p.drow[i] : 0.0f;
    }
    float dq[kDTiles * 4];  // unscaled dQ: dq[4 dn + e] is row row0 + g + 8 (e / 2), column 8 dn + 2 t4 + e % 2
#pragma unroll
    for (int i = 0; i < kDTiles * 4; ++i) dq[i] = 0.0f;

    wait_barrier(bars.q_full(), at.q_parity());
    for (int j = 0; j < n_blocks; ++j) {
      const int s = at.stage<kStages>(j), kb = j * kBlockN;
      const std::uint32_t phase = at.parity<kStages>(j);
      const std::uint32_t k_stage = sK + s * Tr::kKVBytes, v_stage = sV + s * Tr::kKVBytes;
      const bool last = j + 1 == n_blocks;  // Q and dO are free once its S and dP are done
      wait_barrier(bars.k_full(s), phase);
      wait_barrier(bars.v_full(s), phase);
      if (kCausal && kb > last_row) {  // every row of this warpgroup is above the block: P = 0
        release(bars.k_empty(s));
        release(bars.v_empty(s));
        if (last) release(bars.q_empty());
        continue;
      }
      // S = Q K^T and dP = dO V^T: sc[0][nj][e] is row row0 + g + 8 (e / 2), key kb + 8 nj + 2 t4 + e % 2.
      float sc[1][kNTiles][4], dp[kNTiles * 4];
      auto& s_flat = reinterpret_cast<float(&)[kNTiles * 4]>(sc);
      sm90::wgmma_fence();
      mma_rows_by_rows<T, kBlockN, D, kBlockM, kBlockN>(s_flat, q_rows, k_stage);
      sm90::wgmma_commit();
      mma_rows_by_rows<T, kBlockN, D, kBlockM, kBlockN>(dp, do_rows, v_stage);
      sm90::wgmma_commit();
      sm90::wgmma_wait<1>();  // S is done; dP may still run
      sm90::fence_operands(s_flat);
      // P = exp2(scale_log2 S - lse log2(e)), 0 where masked (-inf) or past the document's end.
      mask_scores<kCausal>(sc, row0, kb, len, g, t4);
#pragma unroll
      for (int i = 0; i < kNTiles * 4; ++i) s_flat[i] = exp2f(fmaf(s_flat[i], p.scale_log2, -lse_log2[(i % 4) / 2]));
      sm90::wgmma_wait<0>();
      sm90::fence_operands(dp);
      release(bars.v_empty(s));  // V's last reader (dP) is done
      if (last) release(bars.q_empty());
      // dS = P (dP - Drow) as A fragments (k = keys: S n-tiles 2 ks and 2 ks + 1 are k-step ks,
      // flash_common.cuh's C -> A); register r holds row g + 8 (r % 2).
      std::uint32_t ds[kBlockN / 16][4];
#pragma unroll
      for (int ks = 0; ks < kBlockN / 16; ++ks)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int i = 4 * (2 * ks + r / 2) + 2 * (r % 2);
          ds[ks][r] = pack2<T>(s_flat[i] * (dp[i] - drow[r % 2]), s_flat[i + 1] * (dp[i + 1] - drow[r % 2]));
        }
      // dQ += dS K (k = keys; K read MN-major, as the forward reads V).
      sm90::fence_operands(dq);
      sm90::wgmma_fence();
      mma_fragments_by_tile<T, D, kBlockN>(dq, ds, k_stage);
      sm90::wgmma_commit();
      sm90::wgmma_wait<0>();
      sm90::fence_operands(dq);
      sm90::fence_operands(ds);
      release(bars.k_empty(s));
    }

    // dq = scale * dQ in the storage type, rows inside the document only.
    T* dqg = static_cast<T*>(p.dq) + static_cast<std::int64_t>(start) * p.q_row_stride + h * p.q_head_stride;
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      const int row = row0 + g + 8 * rh;
      if (row < len) {
        T* dst = dqg + static_cast<std::int64_t>(row) * p.q_row_stride + 2 * t4;
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
          *reinterpret_cast<std::uint32_t*>(dst + dn * 8) =
              pack2<T>(dq[4 * dn + 2 * rh] * p.scale, dq[4 * dn + 2 * rh + 1] * p.scale);
      }
    }
    ++at.tile;
    at.block += n_blocks;
  }
#endif
}

template <typename Tr, bool kCausal>
void launch_backward_dq_sm90(const Params& p, cudaStream_t stream) {
  const TensorMaps<Tr> maps(p, /*with_dout=*/true);
  launch_warp_specialized<Tr>(backward_dq_sm90_kernel<Tr, kCausal>, QueryTiles<Tr::kBlockM>::grid(p), stream,
                              "flash backward dq (sm90)", maps.q, maps.k, maps.v, maps.dout, p);
}

}  // namespace

void backward_dq_sm90(const Params& p, Storage storage, bool causal, cudaStream_t stream) {
  LLMLAB_KERNEL_SWITCH(storage, p.head_dim, causal,
                       [&] { launch_backward_dq_sm90<Sm90DqTraits<kHeadDim, elem_type>, kCausal>(p, stream); });
}

}  // namespace flash
}  // namespace llmlab::cuda
