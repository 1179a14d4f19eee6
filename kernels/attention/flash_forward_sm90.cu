// FlashAttention-3-style forward for Hopper (Shah et al. 2024, "FlashAttention-3"), the second
// milestone next to the sm_80-class kernel of flash_forward.cu: warp specialisation (one producer
// warpgroup whose elected thread issues TMA tensor loads; two consumer warpgroups of 64 query
// rows each), a ring of kStages K/V buffers handed over by mbarriers (full: the TMA's bytes have
// landed; empty: every consumer warp is done with the stage), both products on warpgroup MMAs
// (wgmma m64nNk16: S = Q K^T with Q and K from shared memory, O += P V with P from registers and
// V from shared memory read transposed by the descriptor), setmaxnreg moving registers from the
// producer to the consumers. Same mathematics, mask and outputs (out, lse) as flash_forward.cu,
// whose online softmax and masking it shares (flash_common.cuh).
//
// FA3's two schedules are both here: the consumer warpgroups take turns issuing their MMAs
// (ping-pong), and within a warpgroup the softmax of key block j overlaps O += P V of block j-1
// (intra-warpgroup overlap); K and V have their own empty barriers, since K is done with one
// iteration before V. Shared-memory layouts: sm90_ptx.cuh (128B swizzle, 64-column panels).
// Persistent (FA3's tile scheduler, static): one CTA per multiprocessor walks the query tiles
// c, c + #CTAs, ... in longest-causal-work-first order (QueryTiles); the rings' phases carry over
// from tile to tile, and the producer loads the next tile's Q as soon as every consumer warp has
// issued its last S = Q K^T (the q_empty barrier), and its K/V blocks as ring stages free up, so
// that the next tile's loads overlap the current tile's last P V and epilogue.
// Not yet done: the TMA store of O, FP8, tile sizes beyond 128 x 128 (FA3 uses 128 x 176 for
// non-causal D = 128), a dynamic (atomic-counter) tile scheduler.
// Written without a GPU: tested on the CPU emulator (tests/cuda_emulation), not yet timed.
#include "kernels/attention/flash_common.cuh"
#include "kernels/attention/flash_sm90_common.cuh"
#include "kernels/attention/sm90_ptx.cuh"

namespace llmlab::cuda {
namespace flash {
namespace {

// kBlockM = kBlockN = 128: every key block the CTA loads is visible to both consumer warpgroups
// under the causal mask (kb <= qb for multiples of 128), so neither ever skips a stage and the
// barrier phases stay in step. Registers per consumer thread: S 64 + O D/2 fp32, P 32. Shared
// memory: Q + 2 stages of K and V = 160 KB (D = 128) or 80 KB (D = 64), one CTA per SM for D = 128.
template <int kHeadDim_, typename Elem>
struct Sm90FwdTraits : WarpSpecializedTraits<kHeadDim_, Elem, 128, 128> {
  using Base = WarpSpecializedTraits<kHeadDim_, Elem, 128, 128>;
  // Offsets from the 1024-byte-aligned base: Q, K stages, V stages, then the mbarriers.
  static constexpr int kKOffset = Base::kQBytes, kVOffset = kKOffset + Base::kStages * Base::kKVBytes;
  static constexpr int kBarOffset = kVOffset + Base::kStages * Base::kKVBytes;
  static constexpr int kSmemBytes = kBarOffset + 8 * (2 + 4 * Base::kStages) + 1024;  // QkvRingBarriers, slack to align
};

template <typename Tr, bool kCausal>
__global__ void __launch_bounds__(Tr::kThreads, 1)
    forward_sm90_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                        const __grid_constant__ CUtensorMap v_map, const Params p) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();  // a device pass for a target without wgmma (not sm_90a): never launched there
#else
  using T = typename Tr::T;
  constexpr int D = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kStages = Tr::kStages;
  constexpr int kNTiles = Tr::kNTiles, kDTiles = Tr::kDTiles;

  // The swizzle pattern repeats every 1024 bytes of shared address, and the descriptors and the
  // TMA assume atoms aligned to it.
  const std::uint32_t base = (smem_u32(dynamic_smem()) + 1023u) & ~1023u;
  const std::uint32_t sQ = base, sK = base + Tr::kKOffset, sV = base + Tr::kVOffset;
  const QkvRingBarriers<Tr> bars{base + Tr::kBarOffset};
  const int tid = static_cast<int>(threadIdx.x), warpgroup = tid / 128;
  if (tid == 0) bars.init();
  __syncthreads();

  // Persistent: CTA c takes query tiles c, c + gridDim.x, ... (QueryTiles: longest causal work
  // first), its producer and consumers walking them alike, the rings' phases carrying over.
  if (warpgroup == 0) {
    sm90::setmaxnreg_dec<Tr::kProducerRegs>();
    if (tid == 0) produce_query_tiles<Tr, kCausal>(p, q_map, nullptr, k_map, v_map, bars, sQ, 0, sK, sV);
    return;
  }
  sm90::setmaxnreg_inc<Tr::kConsumerRegs>();
  using Tiles = QueryTiles<kBlockM>;
  Tile tile;
  int t = Tiles::first_valid(p, static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x), tile);

  const int consumer = warpgroup - 1, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  // Q rows of this warpgroup: K-major slices of 16 columns (k-step ks: panel ks / 4, +32 bytes each).
  const std::uint32_t q_rows = sQ + consumer * 64 * 128;
  float o[kDTiles][4];
  float row_max[2], row_sum[2];  // [0]: row g, [1]: row g + 8
  auto& o_flat = reinterpret_cast<float(&)[kDTiles * 4]>(o);

  // Ping-pong (FA3 section 3.1): the two consumer warpgroups take turns issuing their MMAs, so
  // that one's softmax runs while the other's MMAs do. Named barrier 1 + c opens warpgroup c's
  // turn: c syncs on it (128 threads) and the other warpgroup arrives (128) after issuing its
  // own. Consumer 0 goes first; the turns alternate through all the CTA's tiles (both consumers
  // see the same key blocks), each side arrives exactly as often as the other syncs (so the last
  // turn of consumer 1 in the CTA's last tile opens nothing), and no barrier is left
  // half-arrived at exit.
  static_assert(Tr::kConsumerWarpgroups == 2, "the ping-pong schedule pairs two consumer warpgroups");
  constexpr int kTurnBarrier = 1;  // 0 is __syncthreads'
  if (consumer == 1) sm90::named_barrier_arrive(kTurnBarrier + 0, 256);
  bool last_tile = false;  // the CTA's last tile
  int n_blocks = 0;        // of the current tile
  auto begin_turn = [&] { sm90::named_barrier_sync(kTurnBarrier + consumer, 256); };
  auto end_turn = [&](int j) {
    if (consumer == 0 || !last_tile || j + 1 < n_blocks) sm90::named_barrier_arrive(kTurnBarrier + (1 - consumer), 256);
  };

  RingPosition at;
  // S = Q K^T for key block j: sc[0][nj][e] is row row0 + g + 8 (e / 2), key kb + 8 nj + 2 t4 + e % 2.
  float sc[1][kNTiles][4];
  auto& s_flat = reinterpret_cast<float(&)[kNTiles * 4]>(sc);
  auto issue_s = [&](int j) {
    const std::uint32_t k_stage = sK + at.stage<kStages>(j) * Tr::kKVBytes;
    sm90::fence_operands(s_flat);
    sm90::wgmma_fence();
    mma_rows_by_rows<T, kBlockN, D, kBlockM, kBlockN>(s_flat, q_rows, k_stage);
    sm90::wgmma_commit();
  };
  // O += P V for key block j, P's A fragments in pa.
  std::uint32_t pa[kBlockN / 16][4];
  auto issue_pv = [&](int j) {
    const std::uint32_t v_stage = sV + at.stage<kStages>(j) * Tr::kKVBytes;
    sm90::fence_operands(o_flat);
    sm90::wgmma_fence();
    mma_fragments_by_tile<T, D, kBlockN>(o_flat, pa, v_stage);
    sm90::wgmma_commit();
  };
  // Mask and online softmax of block j's scores (as flash_forward.cu): sc becomes P, the row max
  // and sum move on, and alpha[rh] is the factor O must be rescaled by once it holds blocks < j.
  float alpha[2];
  int row0 = 0;  // this warp's first query row within the document
  auto softmax = [&](int j) {
    mask_scores<kCausal>(sc, row0, j * kBlockN, tile.len, g, t4);
    online_softmax(sc[0], row_max, row_sum, p.scale_log2, alpha);
  };
  // P as A fragments: S n-tiles 2ks and 2ks + 1 are k-step ks (flash_common.cuh, C -> A).
  auto p_to_fragments = [&] {
#pragma unroll
    for (int ks = 0; ks < kBlockN / 16; ++ks) {
      pa[ks][0] = pack2<T>(sc[0][2 * ks][0], sc[0][2 * ks][1]);
      pa[ks][1] = pack2<T>(sc[0][2 * ks][2], sc[0][2 * ks][3]);
      pa[ks][2] = pack2<T>(sc[0][2 * ks + 1][0], sc[0][2 * ks + 1][1]);
      pa[ks][3] = pack2<T>(sc[0][2 * ks + 1][2], sc[0][2 * ks + 1][3]);
    }
  };
  // A warp releases a stage's K (V), or the tile's Q, once its MMAs that read it are complete:
  // wgmma.wait_group is warp-synchronous, so they are complete for every lane.
  auto release = [&](std::uint32_t bar) {
    if (lane == 0) sm90::mbarrier_arrive(bar);
  };
  // S_j has landed: K's stage is free, and so is Q after the tile's last S.
  auto s_done = [&](int j) {
    sm90::fence_operands(s_flat);
    release(bars.k_empty(at.stage<kStages>(j)));
    if (j + 1 == n_blocks) release(bars.q_empty());
  };

  while (t < Tiles::count(p)) {
    Tile next;
    const int t_next = Tiles::first_valid(p, t + static_cast<int>(gridDim.x), static_cast<int>(gridDim.x), next);
    last_tile = t_next >= Tiles::count(p);
    n_blocks = visible_key_blocks<kBlockM, kBlockN, kCausal>(tile.block, tile.len);
    row0 = tile.block + consumer * 64 + warp * 16;
#pragma unroll
    for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[dn][e] = 0.0f;
    row_max[0] = row_max[1] = -INFINITY;
    row_sum[0] = row_sum[1] = 0.0f;

    // Intra-warpgroup overlap (FA3 section 3.2): iteration j issues S_j and O += P_{j-1} V_{j-1}
    // together, and the softmax of S_j runs while the second product is still on the tensor
    // cores; O is rescaled by alpha_j only after it has landed (O then holds blocks < j at block
    // j's max). P_j goes into the fragments the in-flight product reads only after it completes.
    wait_barrier(bars.q_full(), at.q_parity());
    wait_barrier(bars.k_full(at.stage<kStages>(0)), at.parity<kStages>(0));
    begin_turn();
    issue_s(0);
    end_turn(0);
    sm90::wgmma_wait<0>();
    s_done(0);
    softmax(0);  // O is still 0: nothing to rescale
    p_to_fragments();
    for (int j = 1; j < n_blocks; ++j) {
      wait_barrier(bars.k_full(at.stage<kStages>(j)), at.parity<kStages>(j));
      wait_barrier(bars.v_full(at.stage<kStages>(j - 1)), at.parity<kStages>(j - 1));
      begin_turn();
      issue_s(j);
      issue_pv(j - 1);
      end_turn(j);
      sm90::wgmma_wait<1>();  // S_j (groups retire in order; P_{j-1} V_{j-1} may still run)
      s_done(j);
      softmax(j);
      sm90::wgmma_wait<0>();
      sm90::fence_operands(o_flat);
      release(bars.v_empty(at.stage<kStages>(j - 1)));
#pragma unroll
      for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[dn][e] *= alpha[e / 2];
      p_to_fragments();
    }
    wait_barrier(bars.v_full(at.stage<kStages>(n_blocks - 1)), at.parity<kStages>(n_blocks - 1));
    issue_pv(n_blocks - 1);
    sm90::wgmma_wait<0>();
    sm90::fence_operands(o_flat);
    release(bars.v_empty(at.stage<kStages>(n_blocks - 1)));

    // Epilogue (as flash_forward.cu): O / l, lse = scale * max + log(l); the producer is already
    // loading the next tile.
    T* og = static_cast<T*>(p.out) + static_cast<std::int64_t>(tile.start) * p.q_row_stride + tile.h * p.q_head_stride;
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      const float l = quad_sum(row_sum[rh]);
      const int row = row0 + g + 8 * rh;
      if (row < tile.len) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        T* dst = og + static_cast<std::int64_t>(row) * p.q_row_stride;
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
          *reinterpret_cast<std::uint32_t*>(dst + dn * 8 + 2 * t4) =
              pack2<T>(o[dn][2 * rh] * inv, o[dn][2 * rh + 1] * inv);
        if (t4 == 0)
          p.lse[tile.h * p.lse_head_stride + tile.start + row] =
              l > 0.0f ? row_max[rh] * p.scale + logf(l) : INFINITY;
      }
    }
    ++at.tile;
    at.block += n_blocks;
    t = t_next;
    tile = next;
  }
#endif
}

template <typename Tr, bool kCausal>
void launch_forward_sm90(const Params& p, cudaStream_t stream) {
  const TensorMaps<Tr> maps(p, /*with_dout=*/false);
  launch_warp_specialized<Tr>(forward_sm90_kernel<Tr, kCausal>, QueryTiles<Tr::kBlockM>::grid(p), stream,
                              "flash forward (sm90)", maps.q, maps.k, maps.v, p);
}

}  // namespace

void forward_sm90(const Params& p, Storage storage, bool causal, cudaStream_t stream) {
  LLMLAB_KERNEL_SWITCH(storage, p.head_dim, causal,
                       [&] { launch_forward_sm90<Sm90FwdTraits<kHeadDim, elem_type>, kCausal>(p, stream); });
}

}  // namespace flash
}  // namespace llmlab::cuda
