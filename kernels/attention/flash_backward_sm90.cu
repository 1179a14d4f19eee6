// FlashAttention-3-style backward for Hopper (Shah et al. 2024, "FlashAttention-3", section 3 and
// its backward kernel), the main kernel of flash_backward.cu's atomic-dQ mode on compute
// capability 9.x: same mathematics, masking and outputs as flash_backward.cu's backward_kernel,
// whose preprocess (Drow = rowsum(dO * O), dq_accum = 0) and conversion (dq = scale * dq_accum)
// kernels run before and after it unchanged.
//
// One CTA per (key block of 128 keys, kv head, document), 3 warpgroups:
//   - producer (warpgroup 0; warps 1-3 leave at once, setmaxnreg gives their registers away):
//     lane 0 of warp 0 issues the TMA loads, K and V once, then per step (q head of the GQA
//     group, query block of 64 that can see the key block) Q and dO into a ring of 2 stages;
//     the 32 lanes of warp 0 stage lse * log2(e) (+inf for queries past the document's end:
//     P = 0) and Drow (0 there) next to them. Stage full: 32 arrivals (lane 0's with the TMA's
//     byte count) and the TMA bytes; stage empty: one arrival per consumer warp (8).
//   - 2 consumers (warpgroups 1, 2), consumer c owning keys kb + 64c .. + 63, dK and dV
//     (64 x D fp32 each) in registers across all steps. Per step:
//       S^T = K Q^T, dP^T = V dO^T   wgmma SS m64n64k16 (A = K / V rows K-major, B = Q / dO K-major)
//       P^T = exp2(S^T scale log2(e) - lse log2(e)), 0 where masked (key or query past the
//       document's end, causal key > query: rows of Q / dO past len are the next document's
//       tokens, which the TMA box brings in and which must contribute nothing);
//       dV += P^T dO                 wgmma RS m64nDk16 (A = P^T from registers, B = dO MN-major),
//                                    issued before dP^T is waited for, so that it runs while
//                                    the threads form dS
//       dS^T = P^T (dP^T - Drow)
//       dK += dS^T Q                 wgmma RS (A = dS^T from registers, B = Q MN-major)
//       dS^T (storage type) into a 128B-swizzled [128 keys][64 queries] tile, named barrier 1
//       over both consumers, then dQ = dS K (wgmma SS with A = dS MN-major, B = K MN-major,
//       consumer c taking dQ's columns c D/2 .. + D/2: m64n64 at D = 128, m64n32 at D = 64) and
//       fp32 atomics (two columns each) or bulk reductions (a row each) into dq_accum for
//       queries < len.
//     The dS tile is double-buffered: a consumer rewrites buffer b two steps later, after the
//     named barrier of the step in between, which the other consumer reaches only once its dQ
//     MMAs of buffer b have retired; so one barrier per step suffices.
//   - epilogue: dK * scale and dV in the storage type for keys < len (as backward_kernel).
// Shared memory: K, V (2 x 128 x D), Q and dO stages (4 x 64 x D), dS (2 x 128 x 64), lse and
// Drow stages (4 x 64 fp32), 5 mbarriers: 165 KB (D = 128), 98 KB (D = 64), + 36 / 20 KB of dQ
// staging with bulk reductions; one CTA per SM.
// Registers per consumer thread: dK + dV D fp32, S^T + dP^T 64, P^T / dS^T fragments 32, dQ D / 4;
// setmaxnreg gives the producer 24 and the consumers 240 (as the forward). ptxas (CUDA 13.0,
// sm_90a), all 8 instantiations: 168 registers at entry (the 384-thread launch bound), no spills.
// Deterministic mode: the same kernel without dQ (kAccumulateDq = false: no dS tile, barrier,
// dQ products or atomics; dK and dV bitwise as with them), then flash_backward_dq_sm90.cu's dQ.
// dQ into dq_accum (Tr::kDq): fp32 atomics by the consumers (DqMode::atomics, FlashAttention-2's
// way), or (DqMode::bulk, FlashAttention-3's) each warp stages its 16 rows of the step's dQ in
// shared memory and lanes 0-15 each add one row with cp.reduce.async.bulk, waiting for that
// reduction to have read its row before the next step rewrites it.
// Not done: FA3's overlap of the two consumers' softmax with the other's MMAs, the dQ reductions
// handed to a separate warp, FP8. Written without a GPU: tested on the CPU emulator
// (tests/cuda_emulation), not yet timed.
#include "kernels/attention/flash_common.cuh"
#include "kernels/attention/flash_sm90_common.cuh"
#include "kernels/attention/sm90_ptx.cuh"

namespace llmlab::cuda {
namespace flash {
namespace {

// Consumer c owns keys 64 c .. + 63 of the 128 (kBlockN = 64 x kConsumerWarpgroups).
template <int kHeadDim_, typename Elem, DqMode kDq_>
struct Sm90BwdTraits : WarpSpecializedTraits<kHeadDim_, Elem, 64, 128> {
  static constexpr DqMode kDq = kDq_;
  using Base = WarpSpecializedTraits<kHeadDim_, Elem, 64, 128>;
  static constexpr int kHeadDim = Base::kHeadDim, kBlockM = Base::kBlockM, kBlockN = Base::kBlockN;
  static constexpr int kStages = Base::kStages, kQBytes = Base::kQBytes, kKVBytes = Base::kKVBytes;
  static constexpr int kDsBytes = kBlockN * kBlockM * 2;                // one dS^T buffer [key][query]
  static constexpr int kDqCols = kHeadDim / Base::kConsumerWarpgroups;  // dQ columns per consumer
  // Offsets from the 1024-byte-aligned base (every tile a multiple of 1024 bytes).
  static constexpr int kKOffset = 0, kVOffset = kKVBytes, kQOffset = 2 * kKVBytes;
  static constexpr int kDoOffset = kQOffset + kStages * kQBytes, kDsOffset = kDoOffset + kStages * kQBytes;
  static constexpr int kLseOffset = kDsOffset + 2 * kDsBytes, kDrowOffset = kLseOffset + kStages * kBlockM * 4;
  // DqMode::bulk: each consumer's [64 queries][kDqCols] fp32 dQ staged for the bulk reductions,
  // rows padded by 32 bytes so that a warp's 8-byte fragment stores hit distinct banks.
  static constexpr int kDqRowBytes = (kDqCols + 8) * 4;
  static constexpr int kDqStageOffset = kDrowOffset + kStages * kBlockM * 4;
  static constexpr int kDqStageBytes = kDq == DqMode::bulk ? Base::kConsumerWarpgroups * kBlockM * kDqRowBytes : 0;
  static constexpr int kBarOffset = kDqStageOffset + kDqStageBytes;
  static constexpr int kBarriers = 1 + 2 * kStages;  // kv_full, full[], empty[]
  static constexpr int kSmemBytes = kBarOffset + 8 * kBarriers + 1024;  // + slack to align the base
};

template <typename Tr>
struct Sm90BwdBarriers {
  std::uint32_t base;
  __device__ __forceinline__ std::uint32_t kv_full() const { return base; }
  __device__ __forceinline__ std::uint32_t full(int s) const { return base + 8 * (1 + s); }
  __device__ __forceinline__ std::uint32_t empty(int s) const { return base + 8 * (1 + Tr::kStages + s); }
};

// The steps of a CTA: (q head h0 + i, query block first_qblock + j) for i < group and
// first_qblock + j < n_qblocks, heads outermost; causal: query blocks before first_qblock see
// none of the block's keys.
struct Steps {
  int h0, first_qblock, n_qblocks, n_steps;
};

// Warp 0 of the producer warpgroup: lane 0 issues the TMA loads (K, V once; Q and dO per step
// into stage st % kStages once every consumer warp has released the step two before), all lanes
// stage lse * log2(e) and Drow of the step's queries.
template <typename Tr>
__device__ __forceinline__ void produce(const CUtensorMap& q_map, const CUtensorMap& k_map, const CUtensorMap& v_map,
                                        const CUtensorMap& do_map, const Sm90BwdBarriers<Tr>& bars, std::uint32_t base,
                                        float* s_lse, float* s_drow, const Params& p, int start, int len, int kb,
                                        int kvh, const Steps& steps) {
  constexpr int kBlockM = Tr::kBlockM, kStages = Tr::kStages;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (lane == 0) {
    sm90::prefetch_tensormap(&q_map);
    sm90::prefetch_tensormap(&k_map);
    sm90::prefetch_tensormap(&v_map);
    sm90::prefetch_tensormap(&do_map);
    sm90::mbarrier_arrive_expect_tx(bars.kv_full(), 2 * Tr::kKVBytes);
#pragma unroll
    for (int panel = 0; panel < Tr::kPanels; ++panel) {
      const std::uint32_t offset = panel * Tr::kBlockN * 128;
      sm90::tma_load_3d(base + Tr::kKOffset + offset, &k_map, panel * 64, kvh, start + kb, bars.kv_full());
      sm90::tma_load_3d(base + Tr::kVOffset + offset, &v_map, panel * 64, kvh, start + kb, bars.kv_full());
    }
  }
  int h = steps.h0, qblock = steps.first_qblock;
  for (int st = 0; st < steps.n_steps; ++st) {
    const int s = st % kStages, qb = qblock * kBlockM;
    const auto phase = static_cast<std::uint32_t>((st / kStages) & 1);
    wait_barrier(bars.empty(s), phase ^ 1u);  // a fresh barrier passes parity 1: the first round
#pragma unroll
    for (int i = lane; i < kBlockM; i += 32) {
      const bool valid = qb + i < len;
      const std::int64_t at = h * p.lse_head_stride + start + qb + i;
      s_lse[s * kBlockM + i] = valid ? p.lse[at] * kLog2e : INFINITY;  // padding query: P = 0
      s_drow[s * kBlockM + i] = valid ? p.drow[at] : 0.0f;
    }
    if (lane == 0) {  // arrives after its own stores; the other lanes' arrivals release theirs
      sm90::mbarrier_arrive_expect_tx(bars.full(s), 2 * Tr::kQBytes);
      const std::uint32_t q_stage = base + Tr::kQOffset + s * Tr::kQBytes;
      const std::uint32_t do_stage = base + Tr::kDoOffset + s * Tr::kQBytes;
#pragma unroll
      for (int panel = 0; panel < Tr::kPanels; ++panel) {
        const std::uint32_t offset = panel * kBlockM * 128;
        sm90::tma_load_3d(q_stage + offset, &q_map, panel * 64, h, start + qb, bars.full(s));
        sm90::tma_load_3d(do_stage + offset, &do_map, panel * 64, h, start + qb, bars.full(s));
      }
    } else {
      sm90::mbarrier_arrive(bars.full(s));
    }
    if (++qblock == steps.n_qblocks) {
      qblock = steps.first_qblock;
      ++h;
    }
  }
}

// Tr::kDq: how dQ goes into p.dq_accum (the atomic mode: atomics or bulk reductions); with
// DqMode::none the kernel computes dK and dV alone, bitwise as with dQ, and the deterministic
// mode's backward_dq_sm90 computes dQ.
template <typename Tr, bool kCausal>
__global__ void __launch_bounds__(Tr::kThreads, 1)
    backward_sm90_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                         const __grid_constant__ CUtensorMap v_map, const __grid_constant__ CUtensorMap do_map,
                         const Params p) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();  // a device pass for a target without wgmma (not sm_90a): never launched there
#else
  using T = typename Tr::T;
  constexpr int D = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kStages = Tr::kStages;
  constexpr int kDqCols = Tr::kDqCols;
  constexpr bool kAccumulateDq = Tr::kDq != DqMode::none;

  const int doc = static_cast<int>(blockIdx.z), kvh = static_cast<int>(blockIdx.y);
  const int start = p.cu_seqlens[doc], len = p.cu_seqlens[doc + 1] - start;
  const int kb = static_cast<int>(blockIdx.x) * kBlockN;  // first key (within the document)
  if (kb >= len) return;  // uniform over the CTA
  Steps steps{};
  steps.h0 = kvh * p.group;
  steps.first_qblock = kCausal ? kb / kBlockM : 0;
  steps.n_qblocks = (len + kBlockM - 1) / kBlockM;  // > first_qblock: kb < len
  steps.n_steps = (steps.n_qblocks - steps.first_qblock) * p.group;

  // The swizzle pattern repeats every 1024 bytes of shared address, and the descriptors and the
  // TMA assume atoms aligned to it.
  unsigned char* smem = dynamic_smem();
  const std::uint32_t smem_base = smem_u32(smem), base = (smem_base + 1023u) & ~1023u;
  unsigned char* base_ptr = smem + (base - smem_base);
  float* s_lse = reinterpret_cast<float*>(base_ptr + Tr::kLseOffset);    // [kStages][kBlockM]
  float* s_drow = reinterpret_cast<float*>(base_ptr + Tr::kDrowOffset);  // [kStages][kBlockM]
  const Sm90BwdBarriers<Tr> bars{base + Tr::kBarOffset};
  const int tid = static_cast<int>(threadIdx.x), warpgroup = tid / 128;
  if (tid == 0) {
    sm90::mbarrier_init(bars.kv_full(), 1);
    for (int s = 0; s < kStages; ++s) {
      sm90::mbarrier_init(bars.full(s), 32);                                // the producer warp's lanes
      sm90::mbarrier_init(bars.empty(s), 4 * Tr::kConsumerWarpgroups);  // one arrival per consumer warp
    }
    sm90::fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == 0) {
    sm90::setmaxnreg_dec<Tr::kProducerRegs>();
    if (tid < 32) produce<Tr>(q_map, k_map, v_map, do_map, bars, base, s_lse, s_drow, p, start, len, kb, kvh, steps);
    return;
  }
  sm90::setmaxnreg_inc<Tr::kConsumerRegs>();

  const int consumer = warpgroup - 1, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int key0 = consumer * 64 + warp * 16;  // this warp's first key within the block
  const std::uint32_t sK = base + Tr::kKOffset, sV = base + Tr::kVOffset;
  // This consumer's 64 K / V rows (A of S^T and dP^T, K-major: k-step ks at panel ks / 4, +32 bytes each).
  const std::uint32_t k_rows = sK + consumer * 64 * 128, v_rows = sV + consumer * 64 * 128;
  // K's columns of this consumer's dQ share, as B of dQ = dS K (MN-major): panel c at D = 128,
  // half a panel (64 bytes in) at D = 64.
  const std::uint32_t k_cols = panel_column<kBlockN>(sK, consumer * kDqCols);
  const std::uint32_t dq_stage = base + Tr::kDqStageOffset;  // DqMode::bulk's staging tiles
  float dk[D / 2], dv[D / 2];  // dK^T-fragment: dk[4j + e] is key kb + key0 + g + 8 (e / 2), column 8 j + 2 t4 + e % 2
#pragma unroll
  for (int i = 0; i < D / 2; ++i) dk[i] = dv[i] = 0.0f;

  constexpr int kDsReady = 1;  // named barrier: both consumers' dS^T of the step is in shared memory
  wait_barrier(bars.kv_full(), 0);
  int h = steps.h0, qblock = steps.first_qblock;  // of step st
  for (int st = 0; st < steps.n_steps; ++st) {
    const int s = st % kStages, qb = qblock * kBlockM;
    const auto phase = static_cast<std::uint32_t>((st / kStages) & 1);
    const std::uint32_t q_stage = base + Tr::kQOffset + s * Tr::kQBytes;
    const std::uint32_t do_stage = base + Tr::kDoOffset + s * Tr::kQBytes;
    const std::uint32_t ds_tile = base + Tr::kDsOffset + (st & 1) * Tr::kDsBytes;
    const float* lse = s_lse + s * kBlockM;
    const float* drow = s_drow + s * kBlockM;

    // S^T = K Q^T and dP^T = V dO^T: sc[4 j + e] is key kb + key0 + g + 8 (e / 2), query
    // qb + 8 j + 2 t4 + e % 2 (the accumulator fragment), dp likewise.
    float sc[kBlockM / 2], dp[kBlockM / 2];
    wait_barrier(bars.full(s), phase);
    sm90::wgmma_fence();
    mma_rows_by_rows<T, kBlockM, D, kBlockN, kBlockM>(sc, k_rows, q_stage);
    sm90::wgmma_commit();
    mma_rows_by_rows<T, kBlockM, D, kBlockN, kBlockM>(dp, v_rows, do_stage);
    sm90::wgmma_commit();
    sm90::wgmma_wait<1>();  // S^T is done; dP^T may still run
    sm90::fence_operands(sc);

    // P^T in place. Masked (key or query past the document's end, or key after query when
    // causal): P = 0.
#pragma unroll
    for (int j = 0; j < kBlockM / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kb + key0 + g + 8 * (e / 2), qc = 8 * j + 2 * t4 + e % 2, query = qb + qc;
        const bool masked = key >= len || query >= len || (kCausal && key > query);
        sc[4 * j + e] = masked ? 0.0f : exp2f(fmaf(sc[4 * j + e], p.scale_log2, -lse[qc]));
      }
    // P^T as A fragments (k = queries: accumulator n-tiles 2 ks and 2 ks + 1 are k-step ks,
    // flash_common.cuh's C -> A), and dV += P^T dO (dO read MN-major) issued at once, so that
    // the tensor cores work on it while the threads form dS.
    std::uint32_t pa[kBlockM / 16][4], da[kBlockM / 16][4];
#pragma unroll
    for (int ks = 0; ks < kBlockM / 16; ++ks)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int i = 4 * (2 * ks + r / 2) + 2 * (r % 2);
        pa[ks][r] = pack2<T>(sc[i], sc[i + 1]);
      }
    sm90::fence_operands(dv);
    sm90::wgmma_fence();
    mma_fragments_by_tile<T, D, kBlockM>(dv, pa, do_stage);
    sm90::wgmma_commit();
    sm90::wgmma_wait<1>();  // dP^T is done (groups retire in order); dV may still run
    sm90::fence_operands(dp);
    // dS^T = P^T (dP^T - Drow), as A fragments.
#pragma unroll
    for (int ks = 0; ks < kBlockM / 16; ++ks)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int i = 4 * (2 * ks + r / 2) + 2 * (r % 2), qc = 8 * (2 * ks + r / 2) + 2 * t4;
        da[ks][r] = pack2<T>(sc[i] * (dp[i] - drow[qc]), sc[i + 1] * (dp[i + 1] - drow[qc + 1]));
      }
    // dS^T into rows key0.. of the [128 keys][64 queries] tile.
    if constexpr (kAccumulateDq) {
      store_fragments_sw128(ds_tile, da, key0, g, t4);
      sm90::fence_proxy_async();  // the generic-proxy stores, visible to the wgmma reading them
    }

    // dK += dS^T Q (Q read MN-major).
    sm90::fence_operands(dk);
    sm90::wgmma_fence();
    mma_fragments_by_tile<T, D, kBlockM>(dk, da, q_stage);
    sm90::wgmma_commit();

    // dQ[64 queries][this consumer's kDqCols] = dS K over the 128 keys: A = dS from the dS^T tile
    // (k = keys in rows, m = queries contiguous: MN-major), B = K (k = keys, n = d: MN-major).
    float dq[kDqCols / 2];  // dq[4 j + e]: query qb + 16 warp + g + 8 (e / 2), column c kDqCols + 8 j + 2 t4 + e % 2
    if constexpr (kAccumulateDq) {
      sm90::named_barrier_sync(kDsReady, 256);
      sm90::wgmma_fence();
      mma_tile_by_tile<T, kDqCols, kBlockN>(dq, ds_tile, k_cols);
      sm90::wgmma_commit();
    }
    sm90::wgmma_wait<0>();
    sm90::fence_operands(dv);
    sm90::fence_operands(dk);
    sm90::fence_operands(pa);
    sm90::fence_operands(da);
    if constexpr (kAccumulateDq) sm90::fence_operands(dq);
    // This warp has read stage s (Q, dO, lse, Drow) for the last time (wgmma.wait_group is
    // warp-synchronous): release it.
    if (lane == 0) sm90::mbarrier_arrive(bars.empty(s));

    // dq_accum at row qb of this step, this consumer's first column.
    float* dqg = kAccumulateDq ? p.dq_accum + (static_cast<std::int64_t>(start) + qb) * p.q_row_stride +
                                     h * p.q_head_stride + consumer * kDqCols
                               : nullptr;
    if constexpr (Tr::kDq == DqMode::bulk) {
      // This warp's 16 rows of the staging tile, then one bulk reduction a row (lanes 0-15) for
      // rows inside the document. The rows are rewritten only after the lane that reduced them
      // has waited for its reduction to read them.
      if (lane < 16) sm90::bulk_wait_read<0>();
      __syncwarp();
      const std::uint32_t rows = dq_stage + static_cast<std::uint32_t>((consumer * 64 + warp * 16) * Tr::kDqRowBytes);
#pragma unroll
      for (int rh = 0; rh < 2; ++rh)
#pragma unroll
        for (int j = 0; j < kDqCols / 8; ++j)
          sm90::st_shared_f32x2(rows + static_cast<std::uint32_t>((g + 8 * rh) * Tr::kDqRowBytes + (8 * j + 2 * t4) * 4),
                                dq[4 * j + 2 * rh], dq[4 * j + 2 * rh + 1]);
      sm90::fence_proxy_async();  // the generic-proxy stores, visible to the bulk copies reading them
      __syncwarp();
      const int row = warp * 16 + lane;
      if (lane < 16 && qb + row < len) {
        sm90::bulk_reduce_add_f32(dqg + static_cast<std::int64_t>(row) * p.q_row_stride,
                                  rows + static_cast<std::uint32_t>(lane * Tr::kDqRowBytes), kDqCols * 4);
        sm90::bulk_commit();
      }
    } else if constexpr (Tr::kDq == DqMode::atomics) {
      dqg += 2 * t4;
#pragma unroll
      for (int rh = 0; rh < 2; ++rh) {
        const int row = warp * 16 + g + 8 * rh;
        if (qb + row < len) {
          float* dst = dqg + static_cast<std::int64_t>(row) * p.q_row_stride;
#pragma unroll
          for (int j = 0; j < kDqCols / 8; ++j)  // sm_90's vector atomic: two adjacent columns, 8-byte aligned
            atomicAdd(reinterpret_cast<float2*>(dst + 8 * j), make_float2(dq[4 * j + 2 * rh], dq[4 * j + 2 * rh + 1]));
        }
      }
    }
    if (++qblock == steps.n_qblocks) {
      qblock = steps.first_qblock;
      ++h;
    }
  }

  if constexpr (Tr::kDq == DqMode::bulk) {
    if (lane < 16) sm90::bulk_wait_read<0>();  // the staging rows stay in use until read
  }

  // dK = scale * sum dS^T Q, dV = sum P^T dO, keys kb + key0 + g (+8), in the storage type.
  store_key_gradients<T, D / 8>(p, static_cast<std::int64_t>(start) + kb + key0, kvh, len - (kb + key0), dk, dv, g, t4);
#endif
}

template <typename Tr, bool kCausal>
void launch_backward_sm90(const Params& p, cudaStream_t stream) {
  const TensorMaps<Tr> maps(p, /*with_dout=*/true);
  const dim3 grid(static_cast<unsigned>((p.max_seqlen + Tr::kBlockN - 1) / Tr::kBlockN),
                  static_cast<unsigned>(p.kv_heads), static_cast<unsigned>(p.docs));
  launch_warp_specialized<Tr>(backward_sm90_kernel<Tr, kCausal>, grid, stream, "flash backward (sm90)",
                              maps.q, maps.k, maps.v, maps.dout, p);
}

}  // namespace

void backward_sm90(const Params& p, Storage storage, bool causal, DqMode dq, cudaStream_t stream) {
  LLMLAB_KERNEL_SWITCH(storage, p.head_dim, causal, [&] {
    switch (dq) {
      case DqMode::none: return launch_backward_sm90<Sm90BwdTraits<kHeadDim, elem_type, DqMode::none>, kCausal>(p, stream);
      case DqMode::atomics:
        return launch_backward_sm90<Sm90BwdTraits<kHeadDim, elem_type, DqMode::atomics>, kCausal>(p, stream);
      case DqMode::bulk: return launch_backward_sm90<Sm90BwdTraits<kHeadDim, elem_type, DqMode::bulk>, kCausal>(p, stream);
    }
  });
}

}  // namespace flash
}  // namespace llmlab::cuda
