// The emulator's wgmma.mma_async m64nNk16: products from shared-memory descriptors in every
// canonical layout (K-major and MN-major, swizzle none / 32B / 64B / 128B, k-steps by advancing
// the start address) and from register A fragments, bf16 and fp16, against a float64 reference;
// its asynchrony (accumulators and shared operands before wait_group) and its errors.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/half_float.hpp"
#include "emulator_test_util.hpp"
#include "ops/cuda/device_memory.hpp"
#include "ops/cuda/kernel_launch.cuh"

using namespace llmlab;
using emu_test::error_of;
using emu_test::read_back;

namespace {

// A shared-memory operand layout as a descriptor states it.
struct OperandLayout {
  std::uint32_t span;  // swizzle row bytes: 0 (none), 32, 64, 128
  bool mn_major;
  std::uint32_t lbo, sbo;  // bytes
};

// Byte offset of element (mn, k) of a 16-bit operand: the canonical layouts as CUTLASS's
// make_gmma_desc comments write them (T = 8 elements, shapes and strides in elements, then
// scaled to bytes), followed by the swizzle: the 16-byte chunk within a span-byte row XOR the
// row within the pattern's span / 16 rows.
std::uint32_t layout_offset(const OperandLayout& L, int mn_index, int k_index) {
  const auto mn = static_cast<std::uint32_t>(mn_index), k = static_cast<std::uint32_t>(k_index);
  const std::uint32_t T = 8, W = L.span / 16;  // W: 16-byte chunks per swizzle row
  std::uint32_t elements = 0, bytes = 0;       // the offset: elements * 2 + bytes
  if (!L.mn_major && L.span == 0) {  // ((8,m),(T,2k)):((1T,SBO),(1,LBO))
    elements = mn % 8 * T + k % T;
    bytes = mn / 8 * L.sbo + k / T * L.lbo;
  } else if (!L.mn_major) {  // ((8,m),(T,2)):((W T,SBO),(1,T)); K stays within one swizzle row
    elements = mn % 8 * W * T + k % T + k / T * T;
    bytes = mn / 8 * L.sbo;
  } else if (L.span == 0) {  // ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))
    elements = mn % T + k % 8 * T;
    bytes = mn / T * L.sbo + k / 8 * L.lbo;
  } else {  // ((T,W,m),(8,k)):((1,T,LBO),(W T,SBO))
    elements = mn % T + mn / T % W * T + k % 8 * W * T;
    bytes = mn / (T * W) * L.lbo + k / 8 * L.sbo;
  }
  const std::uint32_t at = 2 * elements + bytes;
  if (L.span == 0) return at;
  const std::uint32_t chunk = at / 16 % W, row = at / 128 % W;
  return at - 16 * chunk + 16 * (chunk ^ row);
}

// The start-address step from k-step s to s + 1 (16 elements of K).
std::uint32_t k_step_bytes(const OperandLayout& L) {
  if (!L.mn_major) return L.span == 0 ? 2 * L.lbo : 32;  // two core matrices; or 16 elements along the row
  return L.span == 0 ? 2 * L.lbo : 2 * L.sbo;             // two groups of 8 K-rows
}

std::uint64_t descriptor(std::uint32_t start, const OperandLayout& L) {
  const std::uint64_t mode = L.span == 128 ? 1 : L.span == 64 ? 2 : L.span == 32 ? 3 : 0;
  return (std::uint64_t{start >> 4} & 0x3fff) | (std::uint64_t{(L.lbo >> 4) & 0x3fff} << 16) |
         (std::uint64_t{(L.sbo >> 4) & 0x3fff} << 32) | (mode << 62);
}

constexpr std::uint32_t kB = 16384;  // shared offset of B (A at 0): A takes at most 8192 bytes, B 16384

struct GemmCase {
  emu::MmaType type;
  int n, k;
  bool rs;
  OperandLayout a, b;
};

std::uint16_t to16(emu::MmaType type, float x) { return type == emu::MmaType::bf16 ? float_to_bf16(x) : float_to_fp16(x); }

// One warpgroup: D (64 x n) = A (64 x k, row-major in a) * B (k x n, row-major in b), in k-steps
// of 16 accumulating with scale_d, D starting as NaN (k-step 0 must not read it).
__global__ void wgmma_product(GemmCase c, const float* a, const float* b, float* d) {
  unsigned char* smem = emu::dynamic_shared_memory();
  const int tid = static_cast<int>(threadIdx.x);
  auto store = [&](std::uint32_t at, float x) {
    const std::uint16_t bits = to16(c.type, x);
    std::memcpy(smem + at, &bits, 2);
  };
  if (!c.rs)
    for (int i = tid; i < 64 * c.k; i += 128) store(layout_offset(c.a, i / c.k, i % c.k), a[i]);
  for (int i = tid; i < c.k * c.n; i += 128) store(kB + layout_offset(c.b, i % c.n, i / c.n), b[i]);
  __syncthreads();
  const int warp = tid / 32 % 4, lane = tid % 32, g = lane / 4, t = lane % 4;
  float acc[128];
  for (float& x : acc) x = std::nanf("");
  emu::wgmma_fence();
  for (int s = 0; s < c.k / 16; ++s) {
    const std::uint64_t desc_b = descriptor(kB + static_cast<std::uint32_t>(s) * k_step_bytes(c.b), c.b);
    if (c.rs) {
      // The mma.m16n8k16 A fragment of rows 16 warp + g (+ 8), columns 16 s + 2t (+ 8).
      auto pack = [&](int row, int col) {
        const float* p = a + (16 * warp + row) * c.k + 16 * s + col;
        return std::uint32_t{to16(c.type, p[0])} | (std::uint32_t{to16(c.type, p[1])} << 16);
      };
      const std::uint32_t frag[4] = {pack(g, 2 * t), pack(g + 8, 2 * t), pack(g, 2 * t + 8), pack(g + 8, 2 * t + 8)};
      emu::wgmma_rs(c.type, c.n, acc, frag, desc_b, s > 0, c.b.mn_major);
    } else {
      const std::uint64_t desc_a = descriptor(static_cast<std::uint32_t>(s) * k_step_bytes(c.a), c.a);
      emu::wgmma_ss(c.type, c.n, acc, desc_a, desc_b, s > 0, c.a.mn_major, c.b.mn_major);
    }
  }
  emu::wgmma_commit_group();
  emu::wgmma_wait_group(0);
  // Accumulator fragment: for n-tile j, acc[4j], acc[4j+1] = D[g][8j+2t, +1], acc[4j+2],
  // acc[4j+3] = D[g+8][8j+2t, +1], rows of warp `warp` of the warpgroup.
  for (int j = 0; j < c.n / 8; ++j)
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 2; ++i) d[(16 * warp + g + 8 * h) * c.n + 8 * j + 2 * t + i] = acc[4 * j + 2 * h + i];
}

// Small integers that depend on row and column (exact in bf16 and fp16; products and sums of
// up to 64 of them exact in fp32): a layout that misplaces an element changes the product.
float a_value(int m, int k) { return static_cast<float>((m * 7 + k * 3) % 17 - 8); }
float b_value(int k, int n) { return static_cast<float>((k * 5 + n * 11) % 13 - 6); }

void check_product(const GemmCase& c, const char* name) {
  std::vector<float> a(static_cast<std::size_t>(64 * c.k)), b(static_cast<std::size_t>(c.k * c.n));
  for (int m = 0; m < 64; ++m)
    for (int k = 0; k < c.k; ++k) a[static_cast<std::size_t>(m * c.k + k)] = a_value(m, k);
  for (int k = 0; k < c.k; ++k)
    for (int n = 0; n < c.n; ++n) b[static_cast<std::size_t>(k * c.n + n)] = b_value(k, n);
  DeviceBuffer da(a.size() * 4), db(b.size() * 4), dd(static_cast<std::size_t>(64 * c.n) * 4);
  copy_to_device(da.get(), a.data(), a.size() * 4);
  copy_to_device(db.get(), b.data(), b.size() * 4);
  emu::reset_stats();
  LLMLAB_LAUNCH(wgmma_product, 1, 128, 2 * kB, nullptr)(c, da.as<float>(), db.as<float>(), dd.as<float>());
  const auto d = read_back<float>(dd, static_cast<std::size_t>(64 * c.n));
  int wrong = 0;
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < c.n; ++n) {
      double want = 0;
      for (int k = 0; k < c.k; ++k) want += static_cast<double>(a_value(m, k)) * b_value(k, n);
      wrong += static_cast<double>(d[static_cast<std::size_t>(m * c.n + n)]) != want;
    }
  INFO(name << (c.type == emu::MmaType::bf16 ? " bf16" : " fp16") << (c.rs ? " rs" : " ss") << ", N = " << c.n
            << ", K = " << c.k);
  CHECK(wrong == 0);
  CHECK(emu::stats().wgmma == static_cast<std::uint64_t>(c.k / 16));
}

// K-major tiles, rows of 8 after one another; the K-major no-swizzle tile puts a row group's
// core matrices (8 rows x 16 bytes) side by side along K.
constexpr OperandLayout kK128{128, false, 16, 1024}, kK64{64, false, 16, 512}, kK32{32, false, 16, 256},
    kKNone{0, false, 128, 512};
// MN-major: 8-K-row groups SBO apart, the MN atoms (64, 32, 16 elements wide) LBO apart after all
// K groups of a K = 64 (128B), 32 (64B) or 16 (32B) tile; no swizzle: 8 x 8 core matrices, K
// groups adjacent (LBO 128), MN groups after the 4 K groups of K = 32.
constexpr OperandLayout kMN128{128, true, 8 * 1024, 1024}, kMN64{64, true, 4 * 512, 512},
    kMN32{32, true, 2 * 256, 256}, kMNNone{0, true, 128, 512};

constexpr auto kBf16 = emu::MmaType::bf16, kFp16 = emu::MmaType::fp16;

// One warpgroup computing D = A B with A, B all ones (N = 8, K = 16); out_early[i] is thread
// i's acc[0] read between commit_group and wait_group, out_late[i] after it. With
// `overwrite`, the block zeroes A between the commit and the wait.
__global__ void read_early(bool overwrite, float* early, float* late) {
  unsigned char* smem = emu::dynamic_shared_memory();
  const int tid = static_cast<int>(threadIdx.x);
  for (int i = tid; i < 64 * 16; i += 128) {
    const std::uint16_t one = float_to_bf16(1.0f);
    std::memcpy(smem + layout_offset(kK128, i / 16, i % 16), &one, 2);
    if (i < 8 * 16) std::memcpy(smem + kB + layout_offset(kK128, i / 16, i % 16), &one, 2);
  }
  __syncthreads();
  float acc[4] = {-1.0f, -1.0f, -1.0f, -1.0f};
  emu::wgmma_fence();
  emu::wgmma_ss(kBf16, 8, acc, descriptor(0, kK128), descriptor(kB, kK128), false, false, false);
  emu::wgmma_commit_group();
  early[tid] = acc[0];
  if (overwrite) {
    __syncthreads();
    std::memset(smem + 1024 * (tid % 8), 0, tid < 8 ? 1024 : 0);
    __syncthreads();
  }
  emu::wgmma_wait_group(0);
  late[tid] = acc[0];
}

enum class Misuse { no_fence, no_wait, base_offset, bad_n, setmaxnreg };

__global__ void misuse(Misuse what) {
  float acc[8] = {};
  const std::uint64_t desc = descriptor(0, kK128) | (what == Misuse::base_offset ? 1ull << 49 : 0);
  if (what == Misuse::setmaxnreg) emu::setmaxnreg(20, false);
  emu::setmaxnreg(240, true);
  if (what != Misuse::no_fence) emu::wgmma_fence();
  emu::wgmma_ss(kBf16, what == Misuse::bad_n ? 12 : 16, acc, desc, desc, false, false, false);
  emu::wgmma_commit_group();
  if (what != Misuse::no_wait) emu::wgmma_wait_group(0);
}

}  // namespace

TEST_CASE("emulator sm90: wgmma ss from K-major 128B-swizzled A and B, k-steps by start address") {
  for (const auto type : {kBf16, kFp16})
    for (const int n : {64, 128, 24}) check_product({type, n, 64, false, kK128, kK128}, "A, B K-major 128B");
}

TEST_CASE("emulator sm90: wgmma ss with MN-major 128B-swizzled B (the P V product's V)") {
  for (const auto type : {kBf16, kFp16})
    for (const int n : {64, 128, 24}) check_product({type, n, 64, false, kK128, kMN128}, "B MN-major 128B");
}

TEST_CASE("emulator sm90: wgmma rs: A from the mma.m16n8k16 register fragment") {
  for (const auto type : {kBf16, kFp16}) {
    for (const int n : {64, 128, 24}) check_product({type, n, 64, true, kK128, kK128}, "B K-major 128B");
    check_product({type, 128, 64, true, kK128, kMN128}, "B MN-major 128B");
  }
}

TEST_CASE("emulator sm90: wgmma ss in the other canonical layouts (swizzle none / 32B / 64B, MN-major A)") {
  for (const auto type : {kBf16, kFp16}) {
    check_product({type, 64, 32, false, kK64, kK64}, "A, B K-major 64B");
    check_product({type, 64, 16, false, kK32, kK32}, "A, B K-major 32B");
    check_product({type, 64, 32, false, kKNone, kKNone}, "A, B K-major no swizzle");
    check_product({type, 64, 64, false, kMN128, kK128}, "A MN-major 128B");
    check_product({type, 64, 32, false, kK64, kMN64}, "B MN-major 64B");
    check_product({type, 32, 16, false, kK32, kMN32}, "B MN-major 32B");
    check_product({type, 64, 32, false, kKNone, kMNNone}, "B MN-major no swizzle");
  }
}

TEST_CASE("emulator sm90: wgmma accumulators and shared operands belong to the wgmma until wait_group") {
  DeviceBuffer early(128 * 4), late(128 * 4);
  int stale_runs = 0, overwritten_runs = 0;
  for (int run = 0; run < 16; ++run) {
    LLMLAB_LAUNCH(read_early, 1, 128, 2 * kB, nullptr)(false, early.as<float>(), late.as<float>());
    const auto before = read_back<float>(early, 128), after = read_back<float>(late, 128);
    for (const float x : after) CHECK(x == 16.0f);
    stale_runs += before[0] == -1.0f;
    LLMLAB_LAUNCH(read_early, 1, 128, 2 * kB, nullptr)(true, early.as<float>(), late.as<float>());
    overwritten_runs += read_back<float>(late, 128)[0] == 0.0f;
  }
  MESSAGE(stale_runs << " of 16 runs read the accumulators before the product; " << overwritten_runs
                     << " computed from an A overwritten before wait_group");
  CHECK(stale_runs > 0);
  CHECK(stale_runs < 16);
  CHECK(overwritten_runs > 0);
}

TEST_CASE("emulator sm90: wgmma misuse is an error: no fence, no wait, base offset, N, setmaxnreg") {
  auto error = [](Misuse what, unsigned threads = 128) {
    return error_of([&] { LLMLAB_LAUNCH(misuse, 1, threads, 8192, nullptr)(what); });
  };
  CHECK(error(Misuse::no_fence).find("no wgmma.fence since the warp's start") != std::string::npos);
  CHECK(error(Misuse::no_wait).find("returned with wgmma.mma_async operations no wgmma.wait_group retired") !=
        std::string::npos);
  CHECK(error(Misuse::base_offset).find("nonzero base offset") != std::string::npos);
  CHECK(error(Misuse::bad_n).find("N = 12") != std::string::npos);
  CHECK(error(Misuse::setmaxnreg).find("setmaxnreg.dec 20") != std::string::npos);
  CHECK(error(Misuse::bad_n, 64).find("N = 12") != std::string::npos);
  CHECK(error(Misuse::no_wait, 64).find("whose warpgroup (warps 0..3) is not whole") != std::string::npos);
}
