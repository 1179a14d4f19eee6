// The emulator's sm_90 synchronisation and data movement: tensor maps (the driver's checks), TMA
// tile loads (box, swizzle, zero fill, deferred landing), mbarriers (a producer/consumer ring,
// deadlock reports), named barriers between warpgroups and bulk reductions into global memory. Kernels call the emulator's
// instructions directly, as the Hopper kernel's inline-PTX wrappers do in the emulated build.
#include <doctest/doctest.h>

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "emulator_test_util.hpp"
#include "ops/cuda/device_memory.hpp"
#include "ops/cuda/kernel_launch.cuh"

using namespace llmlab;
using emu_test::error_of;
using emu_test::read_back;

namespace {

// A [T, H, D] tensor of 16-bit values 1 + d + D (h + H t): every element names its position.
constexpr int T = 100, H = 3, D = 64;
std::uint16_t value_at(int t, int h, int d) { return static_cast<std::uint16_t>(1 + d + D * (h + H * t)); }

DeviceBuffer make_tensor() {
  std::vector<std::uint16_t> x(static_cast<std::size_t>(T * H * D));
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int d = 0; d < D; ++d) x[static_cast<std::size_t>((t * H + h) * D + d)] = value_at(t, h, d);
  DeviceBuffer b(x.size() * 2);
  copy_to_device(b.get(), x.data(), x.size() * 2);
  return b;
}

// The arguments of cuTensorMapEncodeTiled for the [T, H, D] tensor (dims innermost first).
struct MapArgs {
  CUtensorMapDataType type = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  cuuint32_t rank = 3;
  void* address = nullptr;
  cuuint64_t dims[3] = {D, H, T};
  cuuint64_t strides[2] = {D * 2, H * D * 2};
  cuuint32_t box[3] = {64, 1, 64};
  cuuint32_t element_strides[3] = {1, 1, 1};
  CUtensorMapInterleave interleave = CU_TENSOR_MAP_INTERLEAVE_NONE;
  CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_128B;
  CUtensorMapFloatOOBfill oob_fill = CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE;

  CUresult encode(CUtensorMap* map) const {
    return cuTensorMapEncodeTiled(map, type, rank, address, dims, strides, box, element_strides, interleave, swizzle,
                                  CU_TENSOR_MAP_L2_PROMOTION_L2_128B, oob_fill);
  }
  std::size_t box_bytes() const { return std::size_t{box[0]} * box[1] * box[2] * 2; }
};

CUtensorMap encoded(const MapArgs& args) {
  CUtensorMap map;
  REQUIRE(args.encode(&map) == CUDA_SUCCESS);
  return map;
}

// The swizzle as the brief for TMA states it: the 16-byte chunk index within a span-byte row is
// XORed with the row's index within the span / 16 rows of a pattern.
std::uint32_t swizzled(std::uint32_t address, std::uint32_t span) {
  if (span == 0) return address;
  const std::uint32_t chunks = span / 16, chunk = (address / 16) % chunks, row = (address / 128) % chunks;
  return address - 16 * chunk + 16 * (chunk ^ row);
}

constexpr std::uint32_t kBox = 1024;  // shared offset of the boxes: 1024-byte aligned, after the barriers

// Thread 0 loads the box at (c0, c1, c2) into shared memory at kBox; every thread waits for it
// and copies the box's bytes (swizzled as they lie) to out.
__global__ void load_box(const __grid_constant__ CUtensorMap map, int c0, int c1, int c2, int bytes,
                         unsigned char* out) {
  unsigned char* smem = emu::dynamic_shared_memory();
  const std::uint32_t bar = emu::shared_address(smem);
  if (threadIdx.x == 0) {
    emu::mbarrier_init(bar, 1);
    emu::fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    emu::prefetch_tensormap(&map);
    emu::mbarrier_arrive_expect_tx(bar, static_cast<std::uint32_t>(bytes));
    const int coords[3] = {c0, c1, c2};
    emu::tma_load(bar + kBox, &map, coords, 3, bar);
  }
  while (!emu::mbarrier_try_wait_parity(bar, 0)) {
  }
  for (int i = static_cast<int>(threadIdx.x); i < bytes; i += static_cast<int>(blockDim.x)) out[i] = smem[kBox + i];
}

// Thread 0 loads a 64 x 1 x 16 box into shared memory at `box`, completing on the mbarrier at
// `bar` (initialised unless `init` is false), and expects its bytes there before the load, or
// after it (the copy may complete first: the tx-count dips below zero); all wait for it.
__global__ void load_at(const __grid_constant__ CUtensorMap map, std::uint32_t bar, std::uint32_t box, bool init,
                        bool expect_after) {
  if (threadIdx.x == 0 && init) emu::mbarrier_init(bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    if (!expect_after) emu::mbarrier_arrive_expect_tx(bar, 64 * 16 * 2);
    const int coords[3] = {0, 0, 0};
    emu::tma_load(box, &map, coords, 3, bar);
    if (expect_after) emu::mbarrier_arrive_expect_tx(bar, 64 * 16 * 2);
  }
  while (!emu::mbarrier_try_wait_parity(bar, 0)) {
  }
}

// A TMA ring: warp 0's lane 0 produces `tiles` boxes of 16 rows into 2 stages; warps 1 and 2
// consume them (full barriers: 1 arrival + the box's bytes; empty barriers: 64 arrivals) and sum
// the values, each thread into sums[its index - 32].
__global__ void ring(const __grid_constant__ CUtensorMap map, int tiles, unsigned long long* sums) {
  constexpr std::uint32_t kFull = 0, kEmpty = 16, kStage = 1024, kStageBytes = 64 * 16 * 2;
  unsigned char* smem = emu::dynamic_shared_memory();
  const int tid = static_cast<int>(threadIdx.x);
  if (tid == 0) {
    for (std::uint32_t s = 0; s < 2; ++s) {
      emu::mbarrier_init(kFull + 8 * s, 1);
      emu::mbarrier_init(kEmpty + 8 * s, 64);
    }
    emu::fence_barrier_init();
  }
  __syncthreads();
  if (tid < 32) {
    if (tid != 0) return;
    for (int i = 0; i < tiles; ++i) {
      const auto s = static_cast<std::uint32_t>(i % 2);
      while (!emu::mbarrier_try_wait_parity(kEmpty + 8 * s, static_cast<std::uint32_t>((i / 2) & 1) ^ 1u)) {
      }
      emu::mbarrier_arrive_expect_tx(kFull + 8 * s, kStageBytes);
      const int coords[3] = {0, 0, 16 * i};
      emu::tma_load(kStage + kStageBytes * s, &map, coords, 3, kFull + 8 * s);
    }
    return;
  }
  unsigned long long sum = 0;
  for (int i = 0; i < tiles; ++i) {
    const auto s = static_cast<std::uint32_t>(i % 2);
    while (!emu::mbarrier_try_wait_parity(kFull + 8 * s, static_cast<std::uint32_t>((i / 2) & 1))) {
    }
    const auto* tile = reinterpret_cast<const std::uint16_t*>(smem + kStage + kStageBytes * s);
    for (int e = tid - 32; e < 64 * 16; e += 64) sum += tile[e];
    emu::mbarrier_arrive(kEmpty + 8 * s);
  }
  sums[tid - 32] = sum;
}

// Reads the first row of a box after a __syncthreads but before waiting on its mbarrier, then
// again after the wait: stale[i], fresh[i] for thread i.
__global__ void read_before_wait(const __grid_constant__ CUtensorMap map, std::uint16_t* stale,
                                 std::uint16_t* fresh) {
  const auto* row = reinterpret_cast<const std::uint16_t*>(emu::dynamic_shared_memory() + kBox);
  if (threadIdx.x == 0) emu::mbarrier_init(0, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    emu::mbarrier_arrive_expect_tx(0, 64 * 16 * 2);
    const int coords[3] = {0, 0, 0};
    emu::tma_load(kBox, &map, coords, 3, 0);
  }
  __syncthreads();
  stale[threadIdx.x] = row[threadIdx.x];
  while (!emu::mbarrier_try_wait_parity(0, 0)) {
  }
  fresh[threadIdx.x] = row[threadIdx.x];
}

// An mbarrier of `count` arrivals that thread 0 alone arrives at, expecting `tx` bytes; every
// thread waits for its phase 0.
__global__ void wait_forever(std::uint32_t count, std::uint32_t tx) {
  if (threadIdx.x == 0) emu::mbarrier_init(0, count);
  __syncthreads();
  if (threadIdx.x == 0) emu::mbarrier_arrive_expect_tx(0, tx);
  while (!emu::mbarrier_try_wait_parity(0, 0)) {
  }
}

__global__ void arrive_twice() {
  emu::mbarrier_init(0, 1);
  emu::mbarrier_arrive_expect_tx(0, 16);
  emu::mbarrier_arrive(0);
}

__global__ void wait_uninitialised() { emu::mbarrier_try_wait_parity(8, 0); }

// Warpgroup 0 fills a buffer, bar.arrive 1; warpgroup 1 bar.sync 1, reads it, bar.arrive 2;
// warpgroup 0 bar.sync 2 before refilling it. out[i]: the sum warpgroup 1's thread i read.
__global__ void ping_pong(int iterations, int* out) {
  int* buf = reinterpret_cast<int*>(emu::dynamic_shared_memory());
  const int tid = static_cast<int>(threadIdx.x);
  if (tid < 128) {
    for (int it = 0; it < iterations; ++it) {
      if (it > 0) emu::named_barrier_sync(2, 256);
      buf[tid] = 1000 * it + tid;
      emu::named_barrier_arrive(1, 256);
    }
    return;
  }
  int sum = 0;
  for (int it = 0; it < iterations; ++it) {
    emu::named_barrier_sync(1, 256);
    sum += buf[255 - tid];
    if (it + 1 < iterations) emu::named_barrier_arrive(2, 256);
  }
  out[tid - 128] = sum;
}

// Half the block at __syncthreads, the other half at bar.sync 0 for `threads` threads.
__global__ void mixed_barrier_zero(int threads, int* out) {
  int* buf = reinterpret_cast<int*>(emu::dynamic_shared_memory());
  buf[threadIdx.x] = static_cast<int>(threadIdx.x);
  if (threadIdx.x < 128)
    __syncthreads();
  else
    emu::named_barrier_sync(0, threads);
  out[threadIdx.x] = buf[255 - threadIdx.x];
}

__global__ void half_at_named_barrier() {
  if (threadIdx.x < 128) emu::named_barrier_sync(3, 256);
}

__global__ void named_barrier_args(int id, int threads) { emu::named_barrier_sync(id, threads); }

// The upper half arrives at barrier 2 for the lower half, which never syncs on it.
__global__ void arrive_unmatched() {
  if (threadIdx.x >= 64) emu::named_barrier_arrive(2, 128);
}

// Each of 32 threads stages 4 floats (its lane + 1, + 2, + 3, + 4, times `round`) in its 16
// bytes of shared memory (st.shared) and bulk-adds them into out[4 lane ..], `rounds` times,
// rewriting its source only after waiting (wait = true) or right away (wait = false, a race);
// `bytes` and `offset` (floats) break the operation's rules, `exit_unwaited` skips the last wait,
// `fence` = false the fence.proxy.async between the stores and the bulk copy.
__global__ void bulk_add_rows(float* out, int rounds, bool wait, std::uint32_t bytes, int offset, bool exit_unwaited,
                              bool fence) {
  const int lane = static_cast<int>(threadIdx.x);
  const std::uint32_t slot = 16u * static_cast<std::uint32_t>(lane);
  for (int round = 1; round <= rounds; ++round) {
    if (wait) emu::bulk_wait_group_read(0);
    for (int i = 0; i < 4; ++i) {
      const auto x = static_cast<float>(round * (lane + 1 + i));
      emu::st_shared(slot + 4u * static_cast<std::uint32_t>(i), &x, 4);
    }
    if (fence) emu::fence_proxy_async();
    emu::syncwarp();
    emu::bulk_reduce_add_f32(out + 4 * lane + offset, slot, bytes);
    emu::bulk_commit_group();
  }
  if (!exit_unwaited) emu::bulk_wait_group_read(0);
}

}  // namespace

TEST_CASE("emulator sm90: cuTensorMapEncodeTiled applies the driver's documented checks") {
  DeviceBuffer tensor = make_tensor();
  MapArgs ok;
  ok.address = tensor.get();
  CUtensorMap map;
  CHECK(ok.encode(&map) == CUDA_SUCCESS);
  auto rejects = [&](auto&& change) {
    MapArgs bad = ok;
    change(bad);
    return bad.encode(&map) == CUDA_ERROR_INVALID_VALUE;
  };
  CHECK(rejects([](MapArgs& a) { a.rank = 0; }));
  CHECK(rejects([](MapArgs& a) { a.rank = 6; }));
  CHECK(rejects([](MapArgs& a) { a.address = static_cast<char*>(a.address) + 8; }));  // 16-byte aligned
  CHECK(rejects([](MapArgs& a) { a.dims[1] = 0; }));
  CHECK(rejects([](MapArgs& a) { a.strides[0] = D * 2 + 8; }));  // strides: multiples of 16
  CHECK(rejects([](MapArgs& a) { a.strides[1] = 1ull << 40; }));
  CHECK(rejects([](MapArgs& a) { a.box[2] = 0; }));
  CHECK(rejects([](MapArgs& a) { a.box[2] = 257; }));
  CHECK(rejects([](MapArgs& a) { a.box[0] = 72; }));  // 144 bytes: more than the 128-byte swizzle span
  CHECK(rejects([](MapArgs& a) {
    a.swizzle = CU_TENSOR_MAP_SWIZZLE_64B;  // 128 bytes: more than 64
  }));
  CHECK(rejects([](MapArgs& a) {
    a.swizzle = CU_TENSOR_MAP_SWIZZLE_NONE;
    a.box[0] = 4;  // 8 bytes: not a multiple of 16
  }));
  CHECK(rejects([](MapArgs& a) { a.element_strides[1] = 0; }));
  CHECK(rejects([](MapArgs& a) { a.element_strides[1] = 9; }));
  CHECK(rejects([](MapArgs& a) { a.interleave = CU_TENSOR_MAP_INTERLEAVE_32B; }));  // needs the 32B swizzle
  CHECK(rejects([](MapArgs& a) {
    a.type = CU_TENSOR_MAP_DATA_TYPE_UINT16;
    a.oob_fill = CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA;  // floating-point types only
  }));
  alignas(64) unsigned char raw[2 * sizeof(CUtensorMap)];
  CHECK(ok.encode(reinterpret_cast<CUtensorMap*>(raw + 16)) == CUDA_ERROR_INVALID_VALUE);  // 64-byte aligned

  void* fn = nullptr;
  cudaDriverEntryPointQueryResult status{};
  CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &status) ==
        cudaSuccess);
  CHECK(status == cudaDriverEntryPointSuccess);
  CHECK(fn == reinterpret_cast<void*>(&cuTensorMapEncodeTiled));
  CHECK(cudaGetDriverEntryPointByVersion("cuNoSuchThing", &fn, 12000, cudaEnableDefault, &status) == cudaSuccess);
  CHECK(status == cudaDriverEntryPointSymbolNotFound);
  CHECK(fn == nullptr);
}

TEST_CASE("emulator sm90: a TMA box lands swizzled, with the elements outside the tensor zero") {
  DeviceBuffer tensor = make_tensor();
  struct Case {
    CUtensorMapSwizzle swizzle;
    std::uint32_t span;
    cuuint32_t box[3];
    int coords[3];
  };
  const Case cases[] = {
      {CU_TENSOR_MAP_SWIZZLE_128B, 128, {64, 1, 64}, {0, 1, -16}},  // rows before the tensor
      {CU_TENSOR_MAP_SWIZZLE_128B, 128, {64, 1, 64}, {0, 2, 60}},   // rows past its end
      {CU_TENSOR_MAP_SWIZZLE_128B, 128, {64, 2, 32}, {0, 2, 10}},   // head 3 does not exist
      {CU_TENSOR_MAP_SWIZZLE_64B, 64, {32, 1, 64}, {-8, 0, 5}},     // columns before the row
      {CU_TENSOR_MAP_SWIZZLE_32B, 32, {16, 1, 64}, {56, 0, 90}},    // columns past it
      {CU_TENSOR_MAP_SWIZZLE_NONE, 0, {8, 3, 16}, {60, -1, 98}},
  };
  for (const Case& c : cases) {
    MapArgs args;
    args.address = tensor.get();
    args.swizzle = c.swizzle;
    std::copy(c.box, c.box + 3, args.box);
    const CUtensorMap map = encoded(args);
    const auto bytes = static_cast<int>(args.box_bytes());
    DeviceBuffer out(static_cast<std::size_t>(bytes));
    emu::reset_stats();
    LLMLAB_LAUNCH(load_box, 1, 64, kBox + static_cast<std::size_t>(bytes), nullptr)(map, c.coords[0], c.coords[1],
                                                                                   c.coords[2], bytes,
                                                                                   out.as<unsigned char>());
    CHECK(emu::stats().tma_loads == 1);
    CHECK(emu::stats().tma_bytes == static_cast<std::uint64_t>(bytes));
    const auto got = read_back<std::uint16_t>(out, static_cast<std::size_t>(bytes / 2));
    int wrong = 0;
    for (std::uint32_t r = 0; r < c.box[1] * c.box[2]; ++r)
      for (std::uint32_t e = 0; e < c.box[0]; ++e) {
        const int d = c.coords[0] + static_cast<int>(e), h = c.coords[1] + static_cast<int>(r % c.box[1]),
                  t = c.coords[2] + static_cast<int>(r / c.box[1]);
        const bool inside = d >= 0 && d < D && h >= 0 && h < H && t >= 0 && t < T;
        const std::uint32_t at = swizzled(kBox + 2 * (r * c.box[0] + e), c.span) - kBox;
        wrong += got[at / 2] != (inside ? value_at(t, h, d) : 0);
      }
    INFO("swizzle span " << c.span << ", box at (" << c.coords[0] << ", " << c.coords[1] << ", " << c.coords[2] << ")");
    CHECK(wrong == 0);
  }
}

TEST_CASE("emulator sm90: a TMA load may complete before its expect_tx; its destination, mbarrier and reads are checked") {
  DeviceBuffer tensor = make_tensor();
  MapArgs args;
  args.address = tensor.get();
  args.box[2] = 16;
  const CUtensorMap map = encoded(args);
  const std::size_t shared = 8192;
  for (int run = 0; run < 4; ++run) {
    CHECK(error_of([&] { LLMLAB_LAUNCH(load_at, 1, 32, shared, nullptr)(map, 0u, 1024u, true, false); }).empty());
    CHECK(error_of([&] { LLMLAB_LAUNCH(load_at, 1, 32, shared, nullptr)(map, 0u, 1024u, true, true); }).empty());
  }
  CHECK(error_of([&] { LLMLAB_LAUNCH(load_at, 1, 32, shared, nullptr)(map, 0u, 1024u + 128u, true, false); })
            .find("cp.async.bulk.tensor at shared address 1152 (not 1024-byte aligned)") != std::string::npos);
  CHECK(error_of([&] { LLMLAB_LAUNCH(load_at, 1, 32, shared, nullptr)(map, 0u, 1024u, false, false); })
            .find("where no mbarrier was initialised") != std::string::npos);
  CHECK(error_of([&] { LLMLAB_LAUNCH(load_at, 1, 32, shared, nullptr)(map, 1032u, 1024u, true, false); })
            .find("overwrites the mbarrier at shared 0x408") != std::string::npos);
  CHECK(error_of([&] { LLMLAB_LAUNCH(load_at, 1, 32, shared, nullptr)(map, 0u, 7168u, true, false); })
            .find("outside the block's 8192 bytes") != std::string::npos);
  MapArgs too_long = args;  // a map that claims more rows than the allocation holds
  too_long.dims[2] = 2 * T;
  const CUtensorMap long_map = encoded(too_long);
  DeviceBuffer small(static_cast<std::size_t>(T * H * D * 2));
  auto load_rows = [&](const CUtensorMap& m) {
    return error_of([&] { LLMLAB_LAUNCH(load_box, 1, 32, 4096, nullptr)(m, 0, 0, 150, 2048, small.as<unsigned char>()); });
  };
  CHECK(load_rows(map).empty());  // past the tensor: zero fill, no read
  CHECK(load_rows(long_map).find("outside the device allocation of the tensor map's address") != std::string::npos);
}

TEST_CASE("emulator sm90: an mbarrier ring of TMA stages delivers every tile to its consumers") {
  DeviceBuffer tensor = make_tensor();
  MapArgs args;
  args.address = tensor.get();
  args.dims[1] = 1;  // head 0 only: rows of D elements, H D apart
  args.box[2] = 16;
  const CUtensorMap map = encoded(args);
  const int tiles = 6;
  unsigned long long want = 0;
  for (int t = 0; t < 16 * tiles; ++t)
    for (int d = 0; d < D; ++d) want += value_at(t, 0, d);
  DeviceBuffer sums(64 * 8);
  for (int run = 0; run < 4; ++run) {  // schedules and landing moments are random: several runs
    emu::reset_stats();
    LLMLAB_LAUNCH(ring, 1, 96, 1024 + 2 * 2048, nullptr)(map, tiles, sums.as<unsigned long long>());
    const auto got = read_back<unsigned long long>(sums, 64);
    unsigned long long total = 0;
    for (const unsigned long long s : got) total += s;
    CHECK(total == want);
    CHECK(emu::stats().tma_loads == static_cast<std::uint64_t>(tiles));
    CHECK(emu::stats().mbarrier_waits == static_cast<std::uint64_t>(64 * tiles + tiles));
  }
}

TEST_CASE("emulator sm90: a TMA box read before its mbarrier wait is stale in some runs, never after it") {
  DeviceBuffer tensor = make_tensor();
  MapArgs args;
  args.address = tensor.get();
  args.box[2] = 16;
  const CUtensorMap map = encoded(args);
  DeviceBuffer stale(64), fresh(64);
  int stale_runs = 0;
  for (int run = 0; run < 16; ++run) {
    LLMLAB_LAUNCH(read_before_wait, 1, 32, kBox + 2048, nullptr)(map, stale.as<std::uint16_t>(),
                                                                 fresh.as<std::uint16_t>());
    const auto before = read_back<std::uint16_t>(stale, 32), after = read_back<std::uint16_t>(fresh, 32);
    bool any_stale = false;
    for (int i = 0; i < 32; ++i) {
      // Row 0 of the box is not swizzled (row index 0): element i is value_at(0, 0, i).
      CHECK(after[static_cast<std::size_t>(i)] == value_at(0, 0, i));
      any_stale = any_stale || before[static_cast<std::size_t>(i)] == 0xffff;  // shared memory's initial fill
    }
    stale_runs += any_stale;
  }
  MESSAGE(stale_runs << " of 16 runs read the box before it landed");
  CHECK(stale_runs > 0);
  CHECK(stale_runs < 16);
}

TEST_CASE("emulator sm90: an mbarrier phase nothing completes is a deadlock naming the barrier's state") {
  const std::string arrivals = error_of([] { LLMLAB_LAUNCH(wait_forever, 1, 64, 64, nullptr)(2u, 0u); });
  CHECK(arrivals.find("deadlock in block (0, 0, 0)") != std::string::npos);
  CHECK(arrivals.find("64 mbarrier.try_wait.parity(0) on the mbarrier at shared 0x0 (phase 0: 1 of 2 arrivals and "
                      "0 transaction bytes pending)") != std::string::npos);
  const std::string bytes = error_of([] { LLMLAB_LAUNCH(wait_forever, 1, 64, 64, nullptr)(1u, 2048u); });
  CHECK(bytes.find("(phase 0: 0 of 1 arrivals and 2048 transaction bytes pending)") != std::string::npos);
  CHECK(error_of([] { LLMLAB_LAUNCH(arrive_twice, 1, 1, 64, nullptr)(); }).find("more arrivals than its count 1") !=
        std::string::npos);
  CHECK(error_of([] { LLMLAB_LAUNCH(wait_uninitialised, 1, 1, 64, nullptr)(); })
            .find("mbarrier.try_wait.parity on shared address 0x8, where no mbarrier was initialised") !=
        std::string::npos);
}

TEST_CASE("emulator sm90: named barriers order two warpgroups, bar.sync 0 is __syncthreads, none ends half-arrived") {
  DeviceBuffer out(256 * 4);
  for (int run = 0; run < 3; ++run) {
    LLMLAB_LAUNCH(ping_pong, 1, 256, 512, nullptr)(5, out.as<int>());
    const auto sums = read_back<int>(out, 128);
    for (int i = 0; i < 128; ++i) CHECK(sums[static_cast<std::size_t>(i)] == 1000 * (0 + 1 + 2 + 3 + 4) + 5 * (127 - i));
  }
  LLMLAB_LAUNCH(mixed_barrier_zero, 1, 256, 1024, nullptr)(256, out.as<int>());
  const auto reversed = read_back<int>(out, 256);
  for (int i = 0; i < 256; ++i) CHECK(reversed[static_cast<std::size_t>(i)] == 255 - i);
  CHECK(error_of([&] { LLMLAB_LAUNCH(mixed_barrier_zero, 1, 256, 1024, nullptr)(128, out.as<int>()); })
            .find("barrier 0") != std::string::npos);
  const std::string half = error_of([] { LLMLAB_LAUNCH(half_at_named_barrier, 1, 256, 0, nullptr)(); });
  CHECK(half.find("128 bar.sync (barrier 3: 128 of 256 threads arrived)") != std::string::npos);
  CHECK(error_of([] { LLMLAB_LAUNCH(named_barrier_args, 1, 64, 0, nullptr)(16, 64); }).find("ids are 0..15") !=
        std::string::npos);
  CHECK(error_of([] { LLMLAB_LAUNCH(named_barrier_args, 1, 64, 0, nullptr)(1, 48); })
            .find("a positive multiple of 32") != std::string::npos);
  CHECK(error_of([] { LLMLAB_LAUNCH(arrive_unmatched, 1, 128, 0, nullptr)(); })
            .find("block ends with barrier 2 half-arrived (64 of 128 threads)") != std::string::npos);
}

TEST_CASE("emulator sm90: bulk reductions add shared memory into global memory; their source is fenced, then theirs until waited for") {
  DeviceBuffer out(32 * 4 * 4);
  auto run = [&](int rounds, bool wait, std::uint32_t bytes = 16, int offset = 0, bool exit_unwaited = false,
                 bool fence = true) {
    const std::vector<float> half(32 * 4, 0.5f);
    copy_to_device(out.get(), half.data(), half.size() * 4);
    LLMLAB_LAUNCH(bulk_add_rows, 1, 32, 32 * 16, nullptr)(out.as<float>(), rounds, wait, bytes, offset, exit_unwaited,
                                                          fence);
    return read_back<float>(out, 32 * 4);
  };
  emu::reset_stats();
  const auto sums = run(3, true);
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) CHECK(sums[static_cast<std::size_t>(4 * lane + i)] == 0.5f + 6.0f * static_cast<float>(lane + 1 + i));
  CHECK(emu::stats().bulk_reduces == 3 * 32);
  CHECK(emu::stats().bulk_reduce_bytes == 3 * 32 * 16);
  // Rewriting the source before the wait: some runs add a later round's values instead.
  bool raced = false;
  for (int attempt = 0; attempt < 8 && !raced; ++attempt) {
    const auto got = run(3, false);
    for (int lane = 0; lane < 32; ++lane) raced = raced || got[static_cast<std::size_t>(4 * lane)] != 0.5f + 6.0f * static_cast<float>(lane + 1);
  }
  CHECK(raced);
  CHECK(error_of([&] { run(1, true, 8); }).find("a positive multiple of 16") != std::string::npos);
  CHECK(error_of([&] { run(1, true, 16, 1); }).find("not 16-byte aligned") != std::string::npos);
  CHECK(error_of([&] { run(1, true, 16, 4 * 31 + 4); }).find("outside every device allocation") != std::string::npos);
  CHECK(error_of([&] { run(1, true, 16, 0, true); }).find("no cp.async.bulk.wait_group.read has waited for") !=
        std::string::npos);
  // st.shared, then the bulk copy reads it without the writer's fence.proxy.async.
  CHECK(error_of([&] { run(1, true, 16, 0, false, false); })
            .find("wrote with st.shared and has not fenced since (fence.proxy.async") != std::string::npos);
}
