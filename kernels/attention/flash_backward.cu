// FlashAttention-2 backward (Dao 2023, algorithm 2) for bf16/fp16 storage, fp32 accumulation.
// Three kernels: (1) Drow = rowsum(dO * O) in fp32 and the fp32 dQ accumulator zeroed;
// (2) one CTA per (key block, kv head, document), each warp owning 16 keys whose dK, dV stay in
// registers, looping over the q heads of the group and the query blocks that can see its keys:
// recompute S^T = K Q^T and P^T = exp(scale S^T - lse), dV += P^T dO, dP^T = V dO^T,
// dS^T = P^T (dP^T - Drow), dK += dS^T Q, and dQ += dS K through shared memory and fp32
// atomics; (3) dq = scale * dQ accumulator in the storage type. dK, dV are written once, so
// they need no atomics; only dq's summation order depends on the schedule.
// Deterministic mode (FlashAttention's deterministic backward): (2) skips dQ, and dQ is
// recomputed by one CTA per query block looping over the key blocks in a fixed order
// (flash_backward_dq.cu) instead of (3); dk, dv come from the same instructions as in the
// atomic mode, so they are bitwise the same in both modes.
// On compute capability 9.x (FlashKernel::sm90, the automatic choice there) the main kernel (2)
// is flash_backward_sm90.cu's (wgmma, TMA, warp specialisation) between the same (1) and (3), its
// dQ added by atomics or bulk reductions (DqReduction); the deterministic mode then runs
// flash_backward_dq_sm90.cu's dQ pass.
#include <type_traits>

#include "kernels/attention/flash_common.cuh"

namespace llmlab::cuda {
namespace flash {
namespace {

// Tile sizes per head dim. kBlockN = 16 keys a warp; registers bound the query block: a thread
// holds dK and dV (2 x D/2 floats), S^T and dP^T (2 x kBlockM/2 floats) (sm_90, CUDA 13):
//   D = 128: 8 warps, 128 keys, 32 queries a step: 246 registers, no spills.
//   D = 64:  8 warps, 128 keys, 64 queries a step: 237-243 registers, no spills.
// One CTA (8 warps) per SM. smem: K, V (2 x 128 x D), Q and dO double-buffered (4 x kBlockM x D),
// dS^T (128 x kBlockM), lse and Drow: 105 KB (D = 128), 81 KB (D = 64). Not timed yet (written
// without a GPU); FA2 uses 64 queries x 128 keys with 8 warps for D = 128. dQ's fp32 atomics
// make dq's rounding depend on the schedule (FA2's default too); dk, dv are deterministic. The
// deterministic mode drops them (kAtomicDq = false) and recomputes dQ in flash_backward_dq.cu.
template <int kHeadDim_, int kBlockM_, typename Elem>
struct BwdTraits {
  using T = Elem;
  static constexpr int kHeadDim = kHeadDim_, kBlockM = kBlockM_;
  static constexpr int kNWarps = 8, kThreads = kNWarps * 32, kBlockN = 16 * kNWarps;
  static constexpr int kQTiles = kBlockM / 8;   // n-tiles of S^T, dP^T (queries)
  static constexpr int kDTiles = kHeadDim / 8;  // n-tiles of dK, dV
  // dQ [kBlockM][D] is split over the warps: kBlockM / 16 row tiles, each shared by
  // kWarpsPerM warps that take kDQTiles n-tiles of 8 columns.
  static constexpr int kWarpsPerM = kNWarps / (kBlockM / 16), kDQTiles = kHeadDim / 8 / kWarpsPerM;
  static constexpr int kTileElems = kBlockM * kHeadDim;
  static constexpr int kSmemBytes =
      2 * (2 * kBlockN * kHeadDim + 4 * kTileElems + kBlockN * kBlockM) + 2 * 2 * kBlockM * 4;
  static_assert(kDQTiles % 2 == 0 && kNWarps % (kBlockM / 16) == 0, "dQ split");
};

// Drow[h, t] = sum_d dO[t, h, d] O[t, h, d] (fp32) and (atomic dQ) dq_accum[t, h, :] = 0: one
// warp a row.
template <typename T, int D, bool kAtomicDq>
__global__ void __launch_bounds__(256) backward_preprocess_kernel(const Params p) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * 8 + threadIdx.x / 32;  // t * Hq + h
  if (row >= p.tokens * p.heads) return;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t t = row / p.heads, h = row % p.heads;
  const std::int64_t off = t * p.q_row_stride + h * p.q_head_stride;
  const T* o = static_cast<const T*>(p.out) + off;
  const T* d_o = static_cast<const T*>(p.dout) + off;
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < D / 64; ++i) {
    const int c = i * 64 + lane * 2;
    sum += to_float(o[c]) * to_float(d_o[c]) + to_float(o[c + 1]) * to_float(d_o[c + 1]);
    if constexpr (kAtomicDq) *reinterpret_cast<float2*>(p.dq_accum + off + c) = make_float2(0.0f, 0.0f);
  }
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
  if (lane == 0) p.drow[h * p.lse_head_stride + t] = sum;
}

// dq = scale * dq_accum in the storage type, all T rows (padding rows hold 0).
template <typename T>
__global__ void __launch_bounds__(256) backward_convert_dq_kernel(const Params p, std::int64_t n2) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n2; i += stride) {
    const float2 a = reinterpret_cast<const float2*>(p.dq_accum)[i];
    reinterpret_cast<std::uint32_t*>(p.dq)[i] = pack2<T>(a.x * p.scale, a.y * p.scale);
  }
}

// kAtomicDq: also dQ += dS K into dq_accum with fp32 atomics; without it (deterministic mode)
// the kernel computes only dK and dV, the shared-memory layout and barriers unchanged.
template <typename Tr, bool kCausal, bool kAtomicDq>
__global__ void __launch_bounds__(Tr::kThreads, 1) backward_kernel(const Params p) {
  using T = typename Tr::T;
  constexpr int D = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN, kThreads = Tr::kThreads;
  constexpr int kQTiles = Tr::kQTiles, kDTiles = Tr::kDTiles, kDQTiles = Tr::kDQTiles;
  T* sK = reinterpret_cast<T*>(dynamic_smem());  // [kBlockN][D]
  T* sV = sK + kBlockN * D;                // [kBlockN][D]
  T* sQ = sV + kBlockN * D;                // [2][kBlockM][D]
  T* sdO = sQ + 2 * Tr::kTileElems;        // [2][kBlockM][D]
  T* sdS = sdO + 2 * Tr::kTileElems;       // [kBlockN][kBlockM]: dS^T of the current step
  float* sLse = reinterpret_cast<float*>(sdS + kBlockN * kBlockM);  // [2][kBlockM] lse * log2(e)
  float* sDrow = sLse + 2 * kBlockM;                                 // [2][kBlockM]

  const int doc = static_cast<int>(blockIdx.z), kvh = static_cast<int>(blockIdx.y);
  const int start = p.cu_seqlens[doc], len = p.cu_seqlens[doc + 1] - start;
  const int kb = static_cast<int>(blockIdx.x) * kBlockN;  // first key (within the document)
  if (kb >= len) return;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t4 = lane % 4;
  const int key0 = warp * 16;  // this warp's keys within the block

  // Steps: (q head h0 + i, query block first_qblock + j) for i < group, j < n_qblocks - first_qblock.
  const int h0 = kvh * p.group;
  const int first_qblock = kCausal ? kb / kBlockM : 0;  // earlier query blocks see none of these keys
  const int n_qblocks = (len + kBlockM - 1) / kBlockM;  // > first_qblock: kb < len
  const int n_steps = (n_qblocks - first_qblock) * p.group;

  const std::int64_t kv_off = (static_cast<std::int64_t>(start) + kb) * p.kv_row_stride + kvh * p.kv_head_stride;
  load_tile_async<kBlockN, D, kThreads>(sK, static_cast<const T*>(p.k) + kv_off, p.kv_row_stride, len - kb);
  load_tile_async<kBlockN, D, kThreads>(sV, static_cast<const T*>(p.v) + kv_off, p.kv_row_stride, len - kb);

  // Queues the Q, dO tiles (cp.async) and lse, Drow (plain loads) of q head h, query block qblock
  // into buffer b.
  auto load_step = [&](int h, int qblock, int b) {
    const int qb = qblock * kBlockM;
    const std::int64_t q_off = (static_cast<std::int64_t>(start) + qb) * p.q_row_stride + h * p.q_head_stride;
    load_tile_async<kBlockM, D, kThreads>(sQ + b * Tr::kTileElems, static_cast<const T*>(p.q) + q_off,
                                          p.q_row_stride, len - qb);
    load_tile_async<kBlockM, D, kThreads>(sdO + b * Tr::kTileElems, static_cast<const T*>(p.dout) + q_off,
                                          p.q_row_stride, len - qb);
    if (tid < kBlockM) {
      const bool valid = qb + tid < len;
      const std::int64_t i = h * p.lse_head_stride + start + qb + tid;
      sLse[b * kBlockM + tid] = valid ? p.lse[i] * kLog2e : INFINITY;  // padding query: P = 0
      sDrow[b * kBlockM + tid] = valid ? p.drow[i] : 0.0f;
    }
  };
  load_step(h0, first_qblock, 0);
  cp_async_commit();

  // ldmatrix lane addresses (flash_common.cuh): K, V as A (row l % 16, chunk l / 16); Q, dO as B
  // ([query][d] = [n][k]: row (l%8) + 8(l/16), chunk (l/8)%2); dO, Q, K as B with .trans
  // ([k][n]: row (l%8) + 8((l/8)%2), chunk l/16; K's dQ columns start at chunk d0 / 8, a
  // multiple of 4); dS^T as A with .trans ([k][m]: row (l%8) + 8(l/16), chunk 2 mq + (l/8)%2).
  const int mq = warp / Tr::kWarpsPerM, d0 = (warp % Tr::kWarpsPerM) * kDQTiles * 8;
  const LdsmLane<D> a_lane(lane % 16, lane / 16), b_lane(lane % 8 + 8 * (lane / 16), (lane / 8) % 2),
      bt_lane(lane % 8 + 8 * ((lane / 8) % 2), lane / 16), kt_lane(lane % 8 + 8 * ((lane / 8) % 2), d0 / 8 + lane / 16);
  const LdsmLane<kBlockM> ds_lane(lane % 8 + 8 * (lane / 16), 2 * mq + (lane / 8) % 2);
  // dS^T stores (4 bytes: two queries): row key0 + g (+8), chunk 2 ks + {0, 1}, element 2 t4.
  const LdsmLane<kBlockM> st_lane0(g, 0), st_lane1(g, 1);
  const std::uint32_t sK_u32 = smem_u32(sK), sV_u32 = smem_u32(sV), sQ_u32 = smem_u32(sQ), sdO_u32 = smem_u32(sdO),
                      sdS_u32 = smem_u32(sdS);
  float dk[kDTiles][4], dv[kDTiles][4];  // rows key0 + g (+8), columns 8 dn + 2 t4 + {0,1}
#pragma unroll
  for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[dn][e] = dv[dn][e] = 0.0f;

  int h = h0, qblock = first_qblock;  // of step st
  for (int st = 0; st < n_steps; ++st) {
    const int buf = st & 1, qb = qblock * kBlockM;
    const bool head_done = qblock + 1 == n_qblocks;
    const int next_h = head_done ? h + 1 : h, next_qblock = head_done ? first_qblock : qblock + 1;
    if (st + 1 < n_steps) {  // buffer buf ^ 1 was last read before the dS barrier of step st - 1
      load_step(next_h, next_qblock, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // (A) step st's tiles (and K, V) are in shared memory
    const std::uint32_t q_tile = sQ_u32 + buf * Tr::kTileElems * 2, do_tile = sdO_u32 + buf * Tr::kTileElems * 2;
    const float* lse = sLse + buf * kBlockM;
    const float* drow = sDrow + buf * kBlockM;

    // S^T = K Q^T and dP^T = V dO^T, 16 keys x kBlockM queries a warp. A from K / V rows, B from
    // Q / dO ([query][d] = [n][k]); registers 0,1: queries np*16 + 0..7, 2,3: + 8..15.
    float s[kQTiles][4], dp[kQTiles][4];
#pragma unroll
    for (int nj = 0; nj < kQTiles; ++nj)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nj][e] = dp[nj][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      std::uint32_t ka[4], va[4];
      ldmatrix_x4(ka, sK_u32 + 2 * a_lane.at(key0, 2 * ks));
      ldmatrix_x4(va, sV_u32 + 2 * a_lane.at(key0, 2 * ks));
#pragma unroll
      for (int np = 0; np < kQTiles / 2; ++np) {
        const int off = 2 * b_lane.at(np * 16, 2 * ks);
        std::uint32_t qbf[4], dobf[4];
        ldmatrix_x4(qbf, q_tile + off);
        ldmatrix_x4(dobf, do_tile + off);
        Mma<T>::run(s[2 * np], ka, qbf[0], qbf[1]);
        Mma<T>::run(s[2 * np + 1], ka, qbf[2], qbf[3]);
        Mma<T>::run(dp[2 * np], va, dobf[0], dobf[1]);
        Mma<T>::run(dp[2 * np + 1], va, dobf[2], dobf[3]);
      }
    }
    // P^T and dS^T in place: s[nj][e] is key kb + key0 + g + 8 (e / 2), query qb + 8 nj + 2 t4 + e % 2.
    // Masked (key or query past the document's end, or key after query when causal): P = 0.
#pragma unroll
    for (int nj = 0; nj < kQTiles; ++nj)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kb + key0 + g + 8 * (e / 2), qc = nj * 8 + 2 * t4 + e % 2, query = qb + qc;
        const bool masked = key >= len || query >= len || (kCausal && key > query);
        const float pr = masked ? 0.0f : exp2f(fmaf(s[nj][e], p.scale_log2, -lse[qc]));
        s[nj][e] = pr;
        dp[nj][e] = pr * (dp[nj][e] - drow[qc]);
      }
    // As A fragments (k = queries; C n-tiles 2ks, 2ks + 1 make k-step ks), packed at once so the
    // fp32 values die; dS^T also goes to shared memory for dQ: register j of da[ks] holds key
    // key0 + g + 8 (j % 2), queries 16 ks + 8 (j / 2) + 2 t4 + {0, 1}.
    std::uint32_t pa[kBlockM / 16][4], da[kBlockM / 16][4];
#pragma unroll
    for (int ks = 0; ks < kBlockM / 16; ++ks) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int nj = 2 * ks + j / 2, e = 2 * (j % 2);
        pa[ks][j] = pack2<T>(s[nj][e], s[nj][e + 1]);
        da[ks][j] = pack2<T>(dp[nj][e], dp[nj][e + 1]);
        if constexpr (kAtomicDq) {
          const LdsmLane<kBlockM>& st_lane = j / 2 ? st_lane1 : st_lane0;
          *reinterpret_cast<std::uint32_t*>(sdS + st_lane.at(key0 + 8 * (j % 2), 2 * ks) + 2 * t4) = da[ks][j];
        }
      }
    }
    // dV += P^T dO and dK += dS^T Q; B from dO / Q ([query][d] = [k][n]) with .trans; registers
    // 0,1: d dq2*16 + 0..7, 2,3: + 8..15.
#pragma unroll
    for (int ks = 0; ks < kBlockM / 16; ++ks) {
#pragma unroll
      for (int dq2 = 0; dq2 < D / 16; ++dq2) {
        const int off = 2 * bt_lane.at(ks * 16, 2 * dq2);
        std::uint32_t dob[4], qb4[4];
        ldmatrix_x4_trans(dob, do_tile + off);
        ldmatrix_x4_trans(qb4, q_tile + off);
        Mma<T>::run(dv[2 * dq2], pa[ks], dob[0], dob[1]);
        Mma<T>::run(dv[2 * dq2 + 1], pa[ks], dob[2], dob[3]);
        Mma<T>::run(dk[2 * dq2], da[ks], qb4[0], qb4[1]);
        Mma<T>::run(dk[2 * dq2 + 1], da[ks], qb4[2], qb4[3]);
      }
    }
    __syncthreads();  // (B) dS^T complete; every warp is done with Q, dO, lse, Drow of buffer buf

    // dQ[kBlockM][D] += dS K: warp w takes query rows 16 mq .. + 15 and columns d0 .. d0 + 8 kDQTiles.
    // A = dS from dS^T ([key][query] = [k][m]) with .trans; B from K ([key][d] = [k][n]) with .trans.
    if constexpr (kAtomicDq) {
      float acc[kDQTiles][4];
#pragma unroll
      for (int dn = 0; dn < kDQTiles; ++dn)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[dn][e] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < kBlockN / 16; ++ks) {
        std::uint32_t a[4];
        ldmatrix_x4_trans(a, sdS_u32 + 2 * ds_lane.at(ks * 16, 0));
#pragma unroll
        for (int dq2 = 0; dq2 < kDQTiles / 2; ++dq2) {
          std::uint32_t b[4];
          ldmatrix_x4_trans(b, sK_u32 + 2 * kt_lane.at(ks * 16, 2 * dq2));
          Mma<T>::run(acc[2 * dq2], a, b[0], b[1]);
          Mma<T>::run(acc[2 * dq2 + 1], a, b[2], b[3]);
        }
      }
      float* dqg = p.dq_accum + (static_cast<std::int64_t>(start) + qb) * p.q_row_stride + h * p.q_head_stride;
#pragma unroll
      for (int rh = 0; rh < 2; ++rh) {
        const int row = mq * 16 + g + 8 * rh;
        if (qb + row < len) {
          float* dst = dqg + static_cast<std::int64_t>(row) * p.q_row_stride + d0 + 2 * t4;
#pragma unroll
          for (int dn = 0; dn < kDQTiles; ++dn)  // sm_90's vector atomic: two adjacent columns, 8-byte aligned
            atomicAdd(reinterpret_cast<float2*>(dst + dn * 8), make_float2(acc[dn][2 * rh], acc[dn][2 * rh + 1]));
        }
      }
    }
    // No barrier here: the next step's loads go to buffer buf ^ 1 (free since (B)), and sdS is
    // rewritten only after the next (A), which every warp reaches after finishing this dQ.
    h = next_h;
    qblock = next_qblock;
  }

  // dK = scale * sum dS^T Q, dV = sum P^T dO, rows kb + key0 + g (+8), in the storage type.
  store_key_gradients<T, kDTiles>(p, static_cast<std::int64_t>(start) + kb + key0, kvh, len - (kb + key0), &dk[0][0],
                                  &dv[0][0], g, t4);
}

// Atomic dQ: preprocess, key-block kernel with dQ atomics (sm90: backward_sm90's), conversion.
// Deterministic: preprocess and the key-block kernel without dQ (sm90: backward_sm90's); the
// caller then runs backward_dq (backward_dq_sm90).
template <typename Tr, bool kCausal, bool kAtomicDq>
void launch_backward(const Params& p, bool sm90, DqReduction reduction, cudaStream_t stream) {
  using T = typename Tr::T;
  constexpr int D = Tr::kHeadDim;
  const std::int64_t rows = p.tokens * p.heads;
  auto preprocess = backward_preprocess_kernel<T, D, kAtomicDq>;
  LLMLAB_LAUNCH(preprocess, static_cast<unsigned>((rows + 7) / 8), 256, 0, stream)(p);
  check_cuda(cudaGetLastError(), "flash backward preprocess kernel launch");

  if (p.docs > 0 && p.max_seqlen > 0 && sm90) {
    const DqMode dq = !kAtomicDq ? DqMode::none : reduction == DqReduction::bulk ? DqMode::bulk : DqMode::atomics;
    backward_sm90(p, std::is_same_v<T, __half> ? Storage::fp16 : Storage::bf16, kCausal, dq, stream);
  } else if (p.docs > 0 && p.max_seqlen > 0) {
    auto kernel = backward_kernel<Tr, kCausal, kAtomicDq>;
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes),
               "cudaFuncSetAttribute (flash backward shared memory)");
    const dim3 grid(static_cast<unsigned>((p.max_seqlen + Tr::kBlockN - 1) / Tr::kBlockN),
                    static_cast<unsigned>(p.kv_heads), static_cast<unsigned>(p.docs));
    LLMLAB_LAUNCH(kernel, grid, Tr::kThreads, Tr::kSmemBytes, stream)(p);
    check_cuda(cudaGetLastError(), "flash backward kernel launch");
  }

  if constexpr (kAtomicDq) {
    const std::int64_t n2 = rows * D / 2;
    const std::int64_t blocks = std::min<std::int64_t>((n2 + 255) / 256, 132 * 16);
    auto convert = backward_convert_dq_kernel<T>;
    LLMLAB_LAUNCH(convert, static_cast<unsigned>(blocks), 256, 0, stream)(p, n2);
    check_cuda(cudaGetLastError(), "flash backward dq conversion kernel launch");
  }
}

template <typename T, int kHeadDim>
void run_backward(const Params& p, bool causal, bool deterministic, bool sm90, DqReduction reduction,
                  cudaStream_t stream) {
  using Tr = std::conditional_t<kHeadDim == 64, BwdTraits<64, 64, T>, BwdTraits<128, 32, T>>;
  LLMLAB_BOOL_SWITCH(causal, kCausal, [&] {
    LLMLAB_BOOL_SWITCH(deterministic, kDeterministic,
                       [&] { launch_backward<Tr, kCausal, !kDeterministic>(p, sm90, reduction, stream); });
  });
}

std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }

}  // namespace
}  // namespace flash

// Workspace: Drow [Hq, T] fp32, then (atomic dQ only) the dQ accumulator [T, Hq, D] fp32.
std::size_t flash_backward_workspace_bytes(const AttentionShape& s, bool deterministic) {
  const auto rows = static_cast<std::size_t>(s.tokens * s.heads);
  const std::size_t drow_bytes = flash::align256(rows * sizeof(float));
  if (deterministic) return drow_bytes;
  return drow_bytes + flash::align256(rows * static_cast<std::size_t>(s.head_dim) * sizeof(float));
}

void flash_backward(const AttentionShape& s, const AttentionTensors& t, void* workspace, void* stream_ptr,
                    bool deterministic, FlashKernel kernel, DqReduction reduction) {
  if (!flash_supported(s))
    throw Error("flash_backward: head_dim " + std::to_string(s.head_dim) + " is not compiled (64 or 128)");
  flash::check_call(s, t, "flash_backward");
  if (!t.lse || !t.dout || !t.out || !t.dq || !t.dk || !t.dv) throw Error("flash_backward: a tensor is null");
  if (s.tokens > 0 && !workspace) throw Error("flash_backward: workspace is null");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  flash::zero_outside_docs(t.dk, t.cu_seqlens_host, s.docs, s.tokens, s.kv_heads * s.head_dim, 2, stream,
                           "cudaMemsetAsync (flash backward dk padding)");
  flash::zero_outside_docs(t.dv, t.cu_seqlens_host, s.docs, s.tokens, s.kv_heads * s.head_dim, 2, stream,
                           "cudaMemsetAsync (flash backward dv padding)");
  // The atomic mode's conversion writes every row of dq (padding from the zeroed accumulator);
  // the deterministic dQ kernel writes only rows inside documents.
  if (deterministic)
    flash::zero_outside_docs(t.dq, t.cu_seqlens_host, s.docs, s.tokens, s.heads * s.head_dim, 2, stream,
                             "cudaMemsetAsync (flash backward dq padding)");
  if (s.tokens == 0) return;
  const bool sm90 = resolve_flash_kernel(kernel) == FlashKernel::sm90;
  if (reduction == DqReduction::bulk && (!sm90 || deterministic))
    throw Error(std::string("flash_backward: dQ by bulk reductions is the sm90 kernel's atomic mode (") +
                (deterministic ? "the deterministic mode has no dQ reduction)" : "this call runs the sm80 kernel)"));
  flash::Params p = flash::make_params(s, t);
  p.drow = static_cast<float*>(workspace);
  p.dq_accum = deterministic ? nullptr
                             : reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                                        flash::align256(static_cast<std::size_t>(s.tokens * s.heads) *
                                                                        sizeof(float)));
  LLMLAB_STORAGE_SWITCH(t.storage, [&] {
    LLMLAB_HEADDIM_SWITCH(s.head_dim, [&] {
      flash::run_backward<elem_type, kHeadDim>(p, s.causal, deterministic, sm90, reduction, stream);
    });
  });
  if (deterministic && s.docs > 0 && s.max_seqlen > 0) {
    if (sm90)
      flash::backward_dq_sm90(p, t.storage, s.causal, stream);
    else
      flash::backward_dq(p, t.storage, s.causal, stream);
  }
}

}  // namespace llmlab::cuda
