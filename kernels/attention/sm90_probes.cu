// The probes of sm90_probes.hpp: one CTA of one warpgroup per probe. Thread 0 brings the tiles in
// by TMA (flash_sm90_common.cuh's tensor maps) against one mbarrier, the warpgroup runs one of the
// kernels' wgmma loops on them, and every thread writes its accumulator fragment out.
#include <string>

#include "kernels/attention/flash_common.cuh"
#include "kernels/attention/flash_sm90_common.cuh"
#include "kernels/attention/sm90_probes.hpp"
#include "kernels/attention/sm90_ptx.cuh"
#include "ops/cuda/device_memory.hpp"

namespace llmlab::cuda::probe {
namespace {

using flash::check_cuda;
using flash::dynamic_smem;
using flash::smem_u32;

// A probe's launch (flash_sm90_common.cuh's launch_warp_specialized): one warpgroup, `kBytes` of
// tiles at a 1024-byte-aligned base, then the mbarrier.
template <int kBytes>
struct ProbeLaunch {
  static constexpr int kThreads = 128, kSmemBytes = kBytes + 8 + 1024;
};

// The tiles' shared base (kBytes of tiles), with the mbarrier initialised and published; thread 0
// then arms it for the kTxBytes the loads bring (`load`) and issues them, and every thread waits.
template <int kBytes, int kTxBytes, typename Load>
__device__ __forceinline__ std::uint32_t load_tiles(Load load) {
  const std::uint32_t base = (smem_u32(dynamic_smem()) + 1023u) & ~1023u, bar = base + kBytes;
  if (threadIdx.x == 0) {
    sm90::mbarrier_init(bar, 1);
    sm90::fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    sm90::mbarrier_arrive_expect_tx(bar, kTxBytes);
    load(base, bar);
  }
  flash::wait_barrier(bar, 0);
  return base;
}

// The `panels` 64-column panels of a [box_rows][64 panels] tile from token `row` of head `head`.
__device__ __forceinline__ void tma_tile(const CUtensorMap& map, std::uint32_t dst, int panels, int box_rows, int row,
                                         int head, std::uint32_t bar) {
  for (int panel = 0; panel < panels; ++panel)
    sm90::tma_load_3d(dst + static_cast<std::uint32_t>(panel * box_rows * 128), &map, panel * 64, head, row, bar);
}

// The lane's mma.m16n8k16 A fragments of rows row0 + 0..15 of a row-major [..][cols] matrix of
// 16-bit patterns, k-steps of 16 columns: a[ks][r] = A[row0 + g + 8 (r % 2)][16 ks + 8 (r / 2) + 2 t4 + {0, 1}].
template <int kKSteps>
__device__ __forceinline__ void load_fragments(std::uint32_t (&a)[kKSteps][4], const std::uint16_t* m, int cols,
                                               int row0, int g, int t4) {
  for (int ks = 0; ks < kKSteps; ++ks)
    for (int r = 0; r < 4; ++r) {
      const std::uint16_t* at = m + (row0 + g + 8 * (r % 2)) * cols + 16 * ks + 8 * (r / 2) + 2 * t4;
      a[ks][r] = static_cast<std::uint32_t>(at[0]) | (static_cast<std::uint32_t>(at[1]) << 16);
    }
}

// The warpgroup's m64nN accumulator into out [64][N]: acc[4 j + e] is row 16 warp + g + 8 (e / 2),
// column 8 j + 2 t4 + e % 2.
template <int N>
__device__ __forceinline__ void store_accumulator(const float (&acc)[N / 2], float* out) {
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, g = tid % 32 / 4, t4 = tid % 4;
  for (int j = 0; j < N / 8; ++j)
    for (int e = 0; e < 4; ++e) out[(16 * warp + g + 8 * (e / 2)) * N + 8 * j + 2 * t4 + e % 2] = acc[4 * j + e];
}

// Every kernel's body is for sm_90a alone: a device pass for another target (no wgmma, no TMA)
// gets a trap instead, and is never launched (require_device).
template <int kBytes>
__global__ void __launch_bounds__(128, 1)
    tma_box_kernel(const __grid_constant__ CUtensorMap map, int panels, int box_rows, int row, int head,
                   std::uint8_t* out) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();
#else
  const std::uint32_t base = load_tiles<kBytes, kBytes>(
      [&](std::uint32_t at, std::uint32_t bar) { tma_tile(map, at, panels, box_rows, row, head, bar); });
  const unsigned char* tile = dynamic_smem() + (base - smem_u32(dynamic_smem()));
  for (int i = static_cast<int>(threadIdx.x); i < kBytes; i += 128) out[i] = tile[i];
#endif
}

template <typename T, int D, int N>
__global__ void __launch_bounds__(128, 1)
    rows_by_rows_kernel(const __grid_constant__ CUtensorMap a_map, const __grid_constant__ CUtensorMap b_map,
                        int a_row0, float* out) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();
#else
  constexpr int kABytes = 128 * D * 2, kBBytes = N * D * 2;
  const std::uint32_t base = load_tiles<kABytes + kBBytes, kABytes + kBBytes>([&](std::uint32_t at, std::uint32_t bar) {
    tma_tile(a_map, at, D / 64, 128, 0, 0, bar);
    tma_tile(b_map, at + kABytes, D / 64, N, 0, 0, bar);
  });
  float acc[N / 2];
  sm90::wgmma_fence();
  flash::mma_rows_by_rows<T, N, D, 128, N>(acc, base + static_cast<std::uint32_t>(a_row0 * 128), base + kABytes);
  sm90::wgmma_commit();
  sm90::wgmma_wait<0>();
  sm90::fence_operands(acc);
  store_accumulator<N>(acc, out);
#endif
}

template <typename T, int D, int kK>
__global__ void __launch_bounds__(128, 1)
    fragments_by_tile_kernel(const __grid_constant__ CUtensorMap b_map, const std::uint16_t* a, float* out) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();
#else
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32;
  std::uint32_t frags[kK / 16][4];
  load_fragments(frags, a, kK, 16 * (tid / 32), lane / 4, lane % 4);
  const std::uint32_t base = load_tiles<kK * D * 2, kK * D * 2>(
      [&](std::uint32_t at, std::uint32_t bar) { tma_tile(b_map, at, D / 64, kK, 0, 0, bar); });
  float acc[D / 2];
  for (float& x : acc) x = 0.0f;
  sm90::fence_operands(acc);
  sm90::wgmma_fence();
  flash::mma_fragments_by_tile<T, D, kK>(acc, frags, base);
  sm90::wgmma_commit();
  sm90::wgmma_wait<0>();
  sm90::fence_operands(acc);
  sm90::fence_operands(frags);
  store_accumulator<D>(acc, out);
#endif
}

template <typename T, int D>
__global__ void __launch_bounds__(128, 1)
    tile_by_tile_kernel(const __grid_constant__ CUtensorMap b_map, const std::uint16_t* a_t, int col0, float* out) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();
#else
  constexpr int kK = 128, kATBytes = kK * 64 * 2, N = D / 2;
  const std::uint32_t base = load_tiles<kATBytes + kK * D * 2, kK * D * 2>(
      [&](std::uint32_t at, std::uint32_t bar) { tma_tile(b_map, at + kATBytes, D / 64, kK, 0, 0, bar); });
  // A^T's rows (keys) 16 warp.. and 64 + 16 warp.. into the swizzled [128][64] tile, as the
  // backward's consumers store dS^T.
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, g = lane / 4, t4 = lane % 4;
  for (int half = 0; half < 2; ++half) {
    const int row0 = 64 * half + 16 * (tid / 32);
    std::uint32_t frags[4][4];
    load_fragments(frags, a_t, 64, row0, g, t4);
    flash::store_fragments_sw128(base, frags, row0, g, t4);
  }
  sm90::fence_proxy_async();
  __syncthreads();
  float acc[N / 2];
  sm90::wgmma_fence();
  flash::mma_tile_by_tile<T, N, kK>(acc, base, flash::panel_column<kK>(base + kATBytes, col0));
  sm90::wgmma_commit();
  sm90::wgmma_wait<0>();
  sm90::fence_operands(acc);
  store_accumulator<N>(acc, out);
#endif
}

void require(bool ok, const std::string& what) {
  if (!ok) throw Error("sm90 probe: " + what);
}

DeviceBuffer upload(const std::vector<std::uint16_t>& x) {
  DeviceBuffer b(x.size() * 2);
  copy_to_device(b.get(), x.data(), x.size() * 2);
  return b;
}

template <typename Out>
std::vector<Out> finish(const DeviceBuffer& out, std::size_t n) {
  check_cuda(cudaDeviceSynchronize(), "sm90 probe: cudaDeviceSynchronize");
  std::vector<Out> host(n);
  copy_to_host(host.data(), out.get(), n * sizeof(Out));
  return host;
}

// A [rows][head_dim] matrix as a tensor of `rows` tokens and one head.
template <typename T>
CUtensorMap single_head_map(const DeviceBuffer& m, int rows, int head_dim, int box_rows) {
  return flash::make_tensor_map<T>(m.get(), rows, 1, head_dim, box_rows);
}

void require_device() { (void)resolve_flash_kernel(FlashKernel::sm90); }  // throws without sm_90a and a 9.x device

}  // namespace

std::vector<std::uint8_t> tma_box(Storage storage, const std::vector<std::uint16_t>& tensor, int tokens, int heads,
                                  int head_dim, int box_rows, int row, int head) {
  require_device();
  require((head_dim == 64 || head_dim == 128) && (box_rows == 64 || box_rows == 128), "tma_box: unsupported shape");
  require(tensor.size() == static_cast<std::size_t>(tokens) * heads * head_dim, "tma_box: tensor size");
  const DeviceBuffer in = upload(tensor);
  const int bytes = head_dim / 64 * box_rows * 128;
  DeviceBuffer out(static_cast<std::size_t>(bytes));
  LLMLAB_STORAGE_SWITCH(storage, [&] {
    const CUtensorMap map = flash::make_tensor_map<elem_type>(in.get(), tokens, heads, head_dim, box_rows);
    auto launch = [&](auto kernel, auto traits) {
      flash::launch_warp_specialized<decltype(traits)>(kernel, dim3(1), nullptr, "sm90 probe (tma box)", map,
                                                       head_dim / 64, box_rows, row, head, out.as<std::uint8_t>());
    };
    // One instantiation per tile size: 64 x 64, 128 x 64 or 64 x 128, 128 x 128.
    if (bytes == 8192) launch(tma_box_kernel<8192>, ProbeLaunch<8192>{});
    else if (bytes == 16384) launch(tma_box_kernel<16384>, ProbeLaunch<16384>{});
    else launch(tma_box_kernel<32768>, ProbeLaunch<32768>{});
  });
  return finish<std::uint8_t>(out, static_cast<std::size_t>(bytes));
}

std::vector<float> rows_by_rows(Storage storage, int head_dim, int n, int a_row0, const std::vector<std::uint16_t>& a,
                                const std::vector<std::uint16_t>& b) {
  require_device();
  require((head_dim == 64 || head_dim == 128) && (n == 64 || n == 128) && (a_row0 == 0 || a_row0 == 64),
          "rows_by_rows: unsupported shape");
  require(a.size() == 128u * head_dim && b.size() == static_cast<std::size_t>(n) * head_dim, "rows_by_rows: sizes");
  const DeviceBuffer da = upload(a), db = upload(b);
  DeviceBuffer out(64u * n * 4);
  LLMLAB_STORAGE_SWITCH(storage, [&] {
    LLMLAB_HEADDIM_SWITCH(head_dim, [&] {
      LLMLAB_BOOL_SWITCH(n == 128, kWide, [&] {
        constexpr int N = kWide ? 128 : 64;
        flash::launch_warp_specialized<ProbeLaunch<(128 + N) * kHeadDim * 2>>(
            rows_by_rows_kernel<elem_type, kHeadDim, N>, dim3(1), nullptr, "sm90 probe (rows by rows)",
            single_head_map<elem_type>(da, 128, kHeadDim, 128), single_head_map<elem_type>(db, N, kHeadDim, N), a_row0,
            out.as<float>());
      });
    });
  });
  return finish<float>(out, 64u * n);
}

std::vector<float> fragments_by_tile(Storage storage, int head_dim, int k, const std::vector<std::uint16_t>& a,
                                     const std::vector<std::uint16_t>& b) {
  require_device();
  require((head_dim == 64 || head_dim == 128) && (k == 64 || k == 128), "fragments_by_tile: unsupported shape");
  require(a.size() == 64u * k && b.size() == static_cast<std::size_t>(k) * head_dim, "fragments_by_tile: sizes");
  const DeviceBuffer da = upload(a), db = upload(b);
  DeviceBuffer out(64u * head_dim * 4);
  LLMLAB_STORAGE_SWITCH(storage, [&] {
    LLMLAB_HEADDIM_SWITCH(head_dim, [&] {
      LLMLAB_BOOL_SWITCH(k == 128, kLong, [&] {
        constexpr int kK = kLong ? 128 : 64;
        flash::launch_warp_specialized<ProbeLaunch<kK * kHeadDim * 2>>(
            fragments_by_tile_kernel<elem_type, kHeadDim, kK>, dim3(1), nullptr, "sm90 probe (fragments by tile)",
            single_head_map<elem_type>(db, kK, kHeadDim, kK), da.as<std::uint16_t>(), out.as<float>());
      });
    });
  });
  return finish<float>(out, 64u * head_dim);
}

std::vector<float> tile_by_tile(Storage storage, int head_dim, int col0, const std::vector<std::uint16_t>& a_t,
                                const std::vector<std::uint16_t>& b) {
  require_device();
  require((head_dim == 64 || head_dim == 128) && (col0 == 0 || col0 == head_dim / 2),
          "tile_by_tile: unsupported shape");
  require(a_t.size() == 128u * 64 && b.size() == 128u * head_dim, "tile_by_tile: sizes");
  const DeviceBuffer da = upload(a_t), db = upload(b);
  DeviceBuffer out(64u * static_cast<std::size_t>(head_dim / 2) * 4);
  LLMLAB_STORAGE_SWITCH(storage, [&] {
    LLMLAB_HEADDIM_SWITCH(head_dim, [&] {
      flash::launch_warp_specialized<ProbeLaunch<128 * 64 * 2 + 128 * kHeadDim * 2>>(
          tile_by_tile_kernel<elem_type, kHeadDim>, dim3(1), nullptr, "sm90 probe (tile by tile)",
          single_head_map<elem_type>(db, 128, kHeadDim, 128), da.as<std::uint16_t>(), col0, out.as<float>());
    });
  });
  return finish<float>(out, 64u * static_cast<std::size_t>(head_dim / 2));
}

}  // namespace llmlab::cuda::probe
