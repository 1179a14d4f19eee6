// FlashAttention-2 forward (Dao 2023, algorithm 1) for bf16/fp16 storage, fp32 accumulation:
// one CTA per (query block, q head, document), 4 warps each owning kWarpRows query rows (Q
// fragments kept in registers for D = 64, re-read from shared memory for D = 128: see the tile
// sizes); K/V tiles double-buffered in shared memory by cp.async; S = Q K^T
// and O += P V on tensor cores (mma.sync m16n8k16); online softmax in registers with exp2 of
// log2(e)-prescaled scores. Causal: key blocks above the diagonal are never loaded, only blocks
// that cross it (or the document's end) are masked. Writes out and lse = m + log(l) (natural).
#include <type_traits>

#include "kernels/attention/flash_common.cuh"

namespace llmlab::cuda {
namespace flash {
namespace {

// Tile sizes per head dim, bounded by registers: a thread holds kMTiles * D/2 output floats,
// kMTiles * kBlockN/2 scores and, with Q in registers, kMTiles * D/4 Q registers; ptxas keeps
// lane addresses and in-flight fragments on top (sm_90, CUDA 13, -Xptxas -v, bf16 and fp16 alike):
//   D = 128: Br = 128 (32 rows a warp), Bc = 32, Q re-read from shared memory: 252-255 registers,
//            no spills; 0.375 ldmatrix.x4 per MMA. The alternatives: Br = 64, Bc = 64, Q in
//            registers (222 registers, no spills) moves 0.5 ldmatrix.x4 per MMA, and at 4 clocks
//            of shared-memory bandwidth per ldmatrix.x4 that would bound the MMA rate; FA2's
//            Br = 128, Bc = 64 spills 28-60 bytes here, with Q in registers ~500.
//            smem 32 KB Q + 2 x 8 KB K + 2 x 8 KB V = 64 KB; registers allow two CTAs per SM.
//   D = 64:  Br = 128, Bc = 64, Q in registers: 253-254 registers, no spills, 0.25 ldmatrix.x4
//            per MMA (Bc = 128 spills ~100 bytes). smem 16 KB Q + 2 x 8 KB K + 2 x 8 KB V = 48 KB.
// Written without a GPU, so none of this is timed yet: the D = 128 alternatives above are the
// first thing to measure (the traits line in run_forward).
template <int kHeadDim_, int kBlockM_, int kBlockN_, bool kQInRegs_, typename Elem>
struct FwdTraits {
  using T = Elem;
  static constexpr int kHeadDim = kHeadDim_, kBlockM = kBlockM_, kBlockN = kBlockN_;
  static constexpr bool kQInRegs = kQInRegs_;  // else Q's A fragments are re-read from shared memory
  static constexpr int kNWarps = 4, kThreads = kNWarps * 32;
  static constexpr int kWarpRows = kBlockM / kNWarps, kMTiles = kWarpRows / 16;
  static constexpr int kKSteps = kHeadDim / 16;  // k-steps of Q K^T
  static constexpr int kNTiles = kBlockN / 8;    // n-tiles of S
  static constexpr int kDTiles = kHeadDim / 8;   // n-tiles of O
  static constexpr int kSmemElems = kBlockM * kHeadDim + 4 * kBlockN * kHeadDim;  // Q, 2 K, 2 V
  static constexpr int kSmemBytes = kSmemElems * 2;
  static_assert(kWarpRows % 16 == 0 && kBlockN % 16 == 0, "tiles");
};

template <typename Tr, bool kCausal>
__global__ void __launch_bounds__(Tr::kThreads) forward_kernel(const Params p) {
  using T = typename Tr::T;
  constexpr int D = Tr::kHeadDim, kBlockM = Tr::kBlockM, kBlockN = Tr::kBlockN;
  constexpr int kMTiles = Tr::kMTiles, kNTiles = Tr::kNTiles, kDTiles = Tr::kDTiles, kKSteps = Tr::kKSteps;
  T* sQ = reinterpret_cast<T*>(dynamic_smem());  // [kBlockM][D]
  T* sK = sQ + kBlockM * D;                // [2][kBlockN][D]
  T* sV = sK + 2 * kBlockN * D;            // [2][kBlockN][D]

  const int doc = static_cast<int>(blockIdx.z), h = static_cast<int>(blockIdx.y);
  const int start = p.cu_seqlens[doc], len = p.cu_seqlens[doc + 1] - start;
  // Last query blocks first: under the causal mask they have the most key blocks, and starting
  // the longest work first shortens the tail of the grid.
  const int qb = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kBlockM;  // first query row (within the document)
  if (qb >= len) return;
  const int kvh = h / p.group;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int g = lane / 4, t4 = lane % 4;
  const int warp_row0 = warp * Tr::kWarpRows;  // first row of this warp within the block

  const T* qg = static_cast<const T*>(p.q) + (static_cast<std::int64_t>(start) + qb) * p.q_row_stride +
                h * p.q_head_stride;
  const T* kg = static_cast<const T*>(p.k) + static_cast<std::int64_t>(start) * p.kv_row_stride +
                kvh * p.kv_head_stride;
  const T* vg = static_cast<const T*>(p.v) + static_cast<std::int64_t>(start) * p.kv_row_stride +
                kvh * p.kv_head_stride;
  const int n_blocks = visible_key_blocks<kBlockM, kBlockN, kCausal>(qb, len);

  load_tile_async<kBlockM, D, Tr::kThreads>(sQ, qg, p.q_row_stride, len - qb);
  load_kv_async<kBlockN, D, Tr::kThreads>(sK, sV, kg, vg, p.kv_row_stride, 0, len);
  cp_async_commit();

  float o[kMTiles][kDTiles][4];
  float row_max[kMTiles][2], row_sum[kMTiles][2];  // [.][0]: row g, [.][1]: row g + 8 (raw scores)
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi) {
#pragma unroll
    for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mi][dn][e] = 0.0f;
    row_max[mi][0] = row_max[mi][1] = -INFINITY;
    row_sum[mi][0] = row_sum[mi][1] = 0.0f;  // per-thread partial sums, reduced over the quad at the end
  }
  constexpr bool kQInRegs = Tr::kQInRegs;
  // ldmatrix lane addresses (flash_common.cuh): Q as A (row l % 16, chunk l / 16), K as B
  // ([key][d] = [n][k]: row (l%8) + 8(l/16), chunk (l/8)%2), V as B with .trans ([key][d] =
  // [k][n]: row (l%8) + 8((l/8)%2), chunk l/16).
  const LdsmLane<D> q_lane(lane % 16, lane / 16), k_lane(lane % 8 + 8 * (lane / 16), (lane / 8) % 2),
      v_lane(lane % 8 + 8 * ((lane / 8) % 2), lane / 16);
  const std::uint32_t sQ_u32 = smem_u32(sQ), sK_u32 = smem_u32(sK), sV_u32 = smem_u32(sV);
  std::uint32_t qf[kQInRegs ? kMTiles : 1][kQInRegs ? kKSteps : 1][4];  // filled once Q has landed
  auto load_q = [&](std::uint32_t(&a)[4], int mi, int ks) {
    ldmatrix_x4(a, sQ_u32 + 2 * q_lane.at(warp_row0 + mi * 16, 2 * ks));
  };

  for (int j = 0; j < n_blocks; ++j) {
    const int buf = j & 1, kb = j * kBlockN;
    begin_kv_block<kBlockN, D, Tr::kThreads>(sK, sV, kg, vg, p.kv_row_stride, len, j, n_blocks);  // and Q
    if constexpr (kQInRegs) {
      if (j == 0) {
#pragma unroll
        for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
          for (int ks = 0; ks < kKSteps; ++ks) load_q(qf[mi][ks], mi, ks);
      }
    }
    // Causal: a warp whose last row is above this block's first key sees none of it.
    const bool warp_visible = !kCausal || kb <= qb + warp_row0 + Tr::kWarpRows - 1;
    if (warp_visible) {
      const std::uint32_t k_tile = sK_u32 + buf * kBlockN * D * 2, v_tile = sV_u32 + buf * kBlockN * D * 2;
      // S = Q K^T (s[mi][nj][e]: row warp_row0 + 16 mi + g + 8 (e / 2), key kb + 8 nj + 2 t4 + e % 2),
      // keys past the document's end and (causal) after the query masked to -inf.
      float s[kMTiles][kNTiles][4];
      warp_mma_abt<T, kKSteps>(
          s,
          [&](std::uint32_t(&qa)[4], int mi, int ks) {
            if constexpr (kQInRegs) {
#pragma unroll
              for (int r = 0; r < 4; ++r) qa[r] = qf[mi][ks][r];
            } else {
              load_q(qa, mi, ks);
            }
          },
          k_tile, k_lane);
      mask_scores<kCausal>(s, qb + warp_row0, kb, len, g, t4);
      // Online softmax (per row, over the quad of lanes sharing it), then O rescaled.
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi) {
        float alpha[2];
        online_softmax(s[mi], row_max[mi], row_sum[mi], p.scale_log2, alpha);
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
          for (int e = 0; e < 4; ++e) o[mi][dn][e] *= alpha[e / 2];
      }
      // O += P V: P's A fragments come straight from S's C fragments, V is B with .trans.
      warp_mma_cb<T>(o, s, v_tile, v_lane);
    }
    __syncthreads();  // every warp is done with buffer buf before block j + 2 is loaded into it
  }

  // Epilogue: O / l in the storage type, lse = scale * max + log(l). o[mi][dn][2rh + {0,1}] is row
  // warp_row0 + 16 mi + g + 8 rh, columns 8 dn + 2 t4 + {0, 1}.
  T* og = static_cast<T*>(p.out) + (static_cast<std::int64_t>(start) + qb) * p.q_row_stride + h * p.q_head_stride;
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      const float l = quad_sum(row_sum[mi][rh]);
      const int row = warp_row0 + mi * 16 + g + 8 * rh;
      if (qb + row < len) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // l > 0 for every row of a document (key 0 is visible)
        T* dst = og + static_cast<std::int64_t>(row) * p.q_row_stride;
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
          *reinterpret_cast<std::uint32_t*>(dst + dn * 8 + 2 * t4) =
              pack2<T>(o[mi][dn][2 * rh] * inv, o[mi][dn][2 * rh + 1] * inv);
        if (t4 == 0)
          p.lse[h * p.lse_head_stride + start + qb + row] =
              l > 0.0f ? row_max[mi][rh] * p.scale + logf(l) : INFINITY;  // +inf: backward's P = 0
      }
    }
}

template <typename Tr, bool kCausal>
void launch_forward(const Params& p, cudaStream_t stream) {
  auto kernel = forward_kernel<Tr, kCausal>;
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes),
             "cudaFuncSetAttribute (flash forward shared memory)");
  LLMLAB_LAUNCH(kernel, query_block_grid(p, Tr::kBlockM), Tr::kThreads, Tr::kSmemBytes, stream)(p);
  check_cuda(cudaGetLastError(), "flash forward kernel launch");
}

template <typename T, int kHeadDim>
void run_forward(const Params& p, bool causal, cudaStream_t stream) {
  using Tr = std::conditional_t<kHeadDim == 64, FwdTraits<64, 128, 64, true, T>, FwdTraits<128, 128, 32, false, T>>;
  LLMLAB_BOOL_SWITCH(causal, kCausal, [&] { launch_forward<Tr, kCausal>(p, stream); });
}

}  // namespace
}  // namespace flash

bool flash_supported(const AttentionShape& s) { return s.head_dim == 64 || s.head_dim == 128; }

std::size_t flash_forward_workspace_bytes(const AttentionShape& /*s*/) { return 0; }

FlashKernel resolve_flash_kernel(FlashKernel requested) {
  static const int major = [] {
    cudaDeviceProp prop{};
    flash::check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    return prop.major;
  }();
#if defined(LLMLAB_HAVE_SM90A) || defined(LLMLAB_CUDA_EMULATION)
  constexpr bool compiled = true;
#else
  constexpr bool compiled = false;  // built without sm_90a in CMAKE_CUDA_ARCHITECTURES
#endif
  if (requested == FlashKernel::automatic) return compiled && major == 9 ? FlashKernel::sm90 : FlashKernel::sm80;
  if (requested == FlashKernel::sm90 && (!compiled || major != 9))
    throw Error(compiled ? "flash_forward: the sm90 kernel needs a device of compute capability 9.x (this one is " +
                               std::to_string(major) + ".x)"
                         : std::string("flash_forward: the sm90 kernel is not compiled (CMAKE_CUDA_ARCHITECTURES has "
                                       "no 90a)"));
  return requested;
}

const char* flash_kernel_name(FlashKernel kernel) {
  switch (kernel) {
    case FlashKernel::automatic: return "auto";
    case FlashKernel::sm80: return "sm80";
    case FlashKernel::sm90: return "sm90";
  }
  return "?";
}

void flash_forward(const AttentionShape& s, const AttentionTensors& t, void* /*workspace*/, void* stream_ptr,
                   FlashKernel kernel) {
  if (!flash_supported(s))
    throw Error("flash_forward: head_dim " + std::to_string(s.head_dim) + " is not compiled (64 or 128)");
  flash::check_call(s, t, "flash_forward");
  if (!t.lse) throw Error("flash_forward: lse is null");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const std::size_t elem = 2;
  flash::zero_outside_docs(t.out, t.cu_seqlens_host, s.docs, s.tokens, s.heads * s.head_dim, elem, stream,
                           "cudaMemsetAsync (flash forward padding)");
  flash::zero_lse_outside_docs(t.lse, t.cu_seqlens_host, s.docs, s.tokens, s.heads, stream);
  if (s.docs == 0 || s.max_seqlen == 0 || s.tokens == 0) return;
  const flash::Params p = flash::make_params(s, t);
  if (resolve_flash_kernel(kernel) == FlashKernel::sm90) return flash::forward_sm90(p, t.storage, s.causal, stream);
  LLMLAB_STORAGE_SWITCH(t.storage, [&] {
    LLMLAB_HEADDIM_SWITCH(s.head_dim, [&] { flash::run_forward<elem_type, kHeadDim>(p, s.causal, stream); });
  });
}

}  // namespace llmlab::cuda
