// The CUDA emulator itself: CUDA semantics of barriers and shuffles, the PTX fragment layouts of
// ldmatrix and mma.sync, and the errors it raises instead of hanging or reading out of bounds;
// then a property of the real flash kernels only the emulator can check without a GPU: their
// ldmatrix loads are free of shared-memory bank conflicts.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/half_float.hpp"
#include "emulator_test_util.hpp"
#include "kernels/attention/attention_cuda.hpp"
#include "ops/cuda/device_memory.hpp"
#include "ops/cuda/kernel_launch.cuh"

using namespace llmlab;
using emu_test::error_of;
using emu_test::read_back;

namespace {

__global__ void reverse_through_shared(int* out) {
  __shared__ int buf[128];
  buf[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = buf[127 - threadIdx.x];
}

__global__ void shuffle_xor(int* out, int mask) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), mask);
}

__global__ void barrier_in_half_the_block() {
  if (threadIdx.x < 64) __syncthreads();
}

__global__ void divergent_warp(float* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
  } else {
    __syncthreads();
  }
}

__global__ void uses_shared(int bytes) { emu::dynamic_shared_memory()[bytes - 1] = 1; }

__global__ void copy_in(const unsigned char* src, unsigned char* out) {
  unsigned char* smem = emu::dynamic_shared_memory();
  if (threadIdx.x == 0) emu::cp_async_16(emu::shared_address(smem), src, true);
  emu::cp_async_commit();
  emu::cp_async_wait(0);
  __syncthreads();
  out[threadIdx.x] = smem[threadIdx.x];
}

// Shared memory holds four 8x8 matrices of 16-bit values 1000 j + 10 row + col; lane l points
// at row l % 8 of matrix l / 8. out[l][j] is register j of lane l.
__global__ void load_matrices(std::uint32_t* out, bool trans) {
  auto* m = reinterpret_cast<std::uint16_t*>(emu::dynamic_shared_memory());
  const int l = static_cast<int>(threadIdx.x);
  for (int i = 0; i < 8; ++i) m[64 * (l / 8) + 8 * (l % 8) + i] = static_cast<std::uint16_t>(1000 * (l / 8) + 10 * (l % 8) + i);
  __syncthreads();
  std::uint32_t r[4];
  emu::ldmatrix_x4(r, emu::shared_address(m + 64 * (l / 8) + 8 * (l % 8)), trans);
  for (int j = 0; j < 4; ++j) out[4 * l + j] = r[j];
}

// A (16x16) and B (16x8, k x n) are given whole; each lane builds its fragments with the PTX
// layout (lane l = 4 g + t: a0 = A[g][2t..], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 =
// A[g+8][2t+8..]; b0 = B[2t..2t+1][g], b1 = B[2t+8..][g]) and C = 1; D comes back per lane
// (c0, c1 = D[g][2t..], c2, c3 = D[g+8][2t..]) into d[16][8].
__global__ void multiply(const float* a, const float* b, float* d) {
  const int l = static_cast<int>(threadIdx.x), g = l / 4, t = l % 4;
  auto pack = [](float lo, float hi) {
    return static_cast<std::uint32_t>(float_to_bf16(lo)) | (static_cast<std::uint32_t>(float_to_bf16(hi)) << 16);
  };
  const std::uint32_t af[4] = {pack(a[16 * g + 2 * t], a[16 * g + 2 * t + 1]),
                               pack(a[16 * (g + 8) + 2 * t], a[16 * (g + 8) + 2 * t + 1]),
                               pack(a[16 * g + 2 * t + 8], a[16 * g + 2 * t + 9]),
                               pack(a[16 * (g + 8) + 2 * t + 8], a[16 * (g + 8) + 2 * t + 9])};
  const std::uint32_t b0 = pack(b[8 * (2 * t) + g], b[8 * (2 * t + 1) + g]);
  const std::uint32_t b1 = pack(b[8 * (2 * t + 8) + g], b[8 * (2 * t + 9) + g]);
  float c[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  emu::mma_m16n8k16(emu::MmaType::bf16, c, af, b0, b1);
  d[8 * g + 2 * t] = c[0];
  d[8 * g + 2 * t + 1] = c[1];
  d[8 * (g + 8) + 2 * t] = c[2];
  d[8 * (g + 8) + 2 * t + 1] = c[3];
}

}  // namespace

TEST_CASE("emulator: __syncthreads orders shared-memory writes before reads, and shuffles exchange lanes") {
  DeviceBuffer out(128 * sizeof(int));
  LLMLAB_LAUNCH(reverse_through_shared, 1, 128, 0, nullptr)(out.as<int>());
  const auto r = read_back<int>(out, 128);
  for (int i = 0; i < 128; ++i) CHECK(r[static_cast<std::size_t>(i)] == 127 - i);
  for (const int mask : {1, 5, 16, 31}) {
    LLMLAB_LAUNCH(shuffle_xor, 1, 64, 0, nullptr)(out.as<int>(), mask);
    const auto s = read_back<int>(out, 64);
    for (int i = 0; i < 64; ++i) CHECK(s[static_cast<std::size_t>(i)] == (i ^ mask));
  }
}

TEST_CASE("emulator: a barrier or warp instruction not all threads reach is an error, not a hang") {
  const std::string deadlock = error_of([] { LLMLAB_LAUNCH(barrier_in_half_the_block, 1, 128, 0, nullptr)(); });
  CHECK(deadlock.find("deadlock in block (0, 0, 0)") != std::string::npos);
  CHECK(deadlock.find("64 returned") != std::string::npos);
  CHECK(deadlock.find("64 __syncthreads") != std::string::npos);
  DeviceBuffer out(64 * sizeof(float));
  const std::string divergence = error_of([&] { LLMLAB_LAUNCH(divergent_warp, 1, 32, 0, nullptr)(out.as<float>()); });
  CHECK(divergence.find("deadlock") != std::string::npos);
  CHECK(divergence.find("16 shfl.sync") != std::string::npos);
  CHECK(divergence.find("16 __syncthreads") != std::string::npos);
}

TEST_CASE("emulator: dynamic shared memory above 48 KB needs the kernel's opt-in, and at most 227 KB") {
  const std::string refused = error_of([] { LLMLAB_LAUNCH(uses_shared, 1, 32, 64 * 1024, nullptr)(64 * 1024); });
  CHECK(refused.find("65536 bytes of dynamic shared memory; the kernel allows 49152") != std::string::npos);
  CHECK(cudaFuncSetAttribute(uses_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess);
  CHECK(error_of([] { LLMLAB_LAUNCH(uses_shared, 1, 32, 64 * 1024, nullptr)(64 * 1024); }).empty());
  CHECK(cudaFuncSetAttribute(uses_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) ==
        cudaErrorInvalidValue);
}

TEST_CASE("emulator: cp.async lands by wait_group + __syncthreads, and may not read past an allocation") {
  DeviceBuffer src(64), out(16);
  std::vector<unsigned char> bytes(64);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i + 1);
  copy_to_device(src.get(), bytes.data(), bytes.size());
  for (int run = 0; run < 8; ++run) {  // landing moments are random: several runs
    LLMLAB_LAUNCH(copy_in, 1, 16, 16, nullptr)(src.as<unsigned char>() + 16, out.as<unsigned char>());
    const auto got = read_back<unsigned char>(out, 16);
    for (std::size_t i = 0; i < 16; ++i) CHECK(got[i] == bytes[16 + i]);
  }
  const std::string past = error_of(
      [&] { LLMLAB_LAUNCH(copy_in, 1, 16, 16, nullptr)(src.as<unsigned char>() + 64, out.as<unsigned char>()); });
  CHECK(past.find("cp.async reads 16 bytes outside every device allocation") != std::string::npos);
}

TEST_CASE("emulator: ldmatrix.x4 gives lane l row l/4, columns 2(l%4)+{0,1} of each matrix, or of its transpose") {
  DeviceBuffer out(32 * 4 * 4);
  for (const bool trans : {false, true}) {
    LLMLAB_LAUNCH(load_matrices, 1, 32, 4 * 64 * 2, nullptr)(out.as<std::uint32_t>(), trans);
    const auto r = read_back<std::uint32_t>(out, 128);
    for (int l = 0; l < 32; ++l)
      for (int j = 0; j < 4; ++j) {
        const int row = l / 4, col = 2 * (l % 4);
        const int lo = trans ? 1000 * j + 10 * col + row : 1000 * j + 10 * row + col;
        const int hi = trans ? 1000 * j + 10 * (col + 1) + row : 1000 * j + 10 * row + col + 1;
        const std::uint32_t v = r[static_cast<std::size_t>(4 * l + j)];
        CHECK(static_cast<int>(v & 0xffff) == lo);
        CHECK(static_cast<int>(v >> 16) == hi);
      }
  }
}

TEST_CASE("emulator: mma.sync m16n8k16 computes D = A B + C from the PTX fragment layout") {
  std::vector<float> a(16 * 16), b(16 * 8);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(static_cast<int>(i % 7) - 3);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(static_cast<int>(i % 5) - 2) * 0.5f;
  DeviceBuffer da(a.size() * 4), db(b.size() * 4), dd(16 * 8 * 4);
  copy_to_device(da.get(), a.data(), a.size() * 4);
  copy_to_device(db.get(), b.data(), b.size() * 4);
  LLMLAB_LAUNCH(multiply, 1, 32, 0, nullptr)(da.as<float>(), db.as<float>(), dd.as<float>());
  const auto d = read_back<float>(dd, 128);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double want = 1.0;  // C; these small integers and halves are exact in bf16 and fp32
      for (int k = 0; k < 16; ++k) want += static_cast<double>(a[static_cast<std::size_t>(16 * i + k)]) * b[static_cast<std::size_t>(8 * k + j)];
      CHECK(static_cast<double>(d[static_cast<std::size_t>(8 * i + j)]) == want);
    }
}

TEST_CASE("flash kernels (emulated): every ldmatrix is free of bank conflicts; the sm90 kernels load each tile once") {
  for (const std::int64_t D : {64, 128}) {
    AttentionShape s;
    s.tokens = 300;
    s.docs = 2;
    s.max_seqlen = 200;
    s.heads = 2;
    s.kv_heads = 1;
    s.head_dim = D;
    s.causal = true;
    s.scale = 0.125f;
    const std::vector<std::int32_t> cu = {0, 100, 300};
    const auto elems = static_cast<std::size_t>(s.tokens * s.heads * D);
    const auto kv_elems = static_cast<std::size_t>(s.tokens * s.kv_heads * D);
    std::vector<std::uint16_t> ones(elems, float_to_bf16(0.25f));
    DeviceBuffer dcu(cu.size() * 4), q(elems * 2), k(kv_elems * 2), v(kv_elems * 2), o(elems * 2), dout(elems * 2),
        lse(static_cast<std::size_t>(s.tokens * s.heads) * 4), dq(elems * 2), dk(kv_elems * 2), dv(kv_elems * 2),
        ws(cuda::flash_backward_workspace_bytes(s));
    copy_to_device(dcu.get(), cu.data(), cu.size() * 4);
    for (const DeviceBuffer* b : {&q, &dout}) copy_to_device(b->get(), ones.data(), elems * 2);
    for (const DeviceBuffer* b : {&k, &v}) copy_to_device(b->get(), ones.data(), kv_elems * 2);
    cuda::AttentionTensors t;
    t.cu_seqlens = dcu.as<std::int32_t>();
    t.cu_seqlens_host = cu.data();
    t.q = q.get();
    t.k = k.get();
    t.v = v.get();
    t.out = o.get();
    t.lse = lse.as<float>();
    t.dout = dout.get();
    t.dq = dq.get();
    t.dk = dk.get();
    t.dv = dv.get();
    emu::reset_stats();
    cuda::flash_forward(s, t, nullptr, nullptr, cuda::FlashKernel::sm80);
    const emu::Stats forward = emu::stats();
    emu::reset_stats();
    cuda::flash_backward(s, t, ws.get(), nullptr, false, cuda::FlashKernel::sm80);
    const emu::Stats backward = emu::stats();
    emu::reset_stats();
    cuda::flash_backward(s, t, ws.get(), nullptr, true, cuda::FlashKernel::sm80);  // the atomic mode's workspace is the larger
    const emu::Stats deterministic = emu::stats();
    // The instruction mix the traits comments of the kernels reason with.
    auto mix = [](const char* pass, const emu::Stats& x) {
      return fmt::format("{} {} mma, {} ldmatrix.x4 ({:.3f} a mma), {} extra wavefronts", pass, x.mma, x.ldmatrix,
                         static_cast<double>(x.ldmatrix) / static_cast<double>(x.mma), x.ldmatrix_conflicts);
    };
    MESSAGE("D=" << D << ": " << mix("forward", forward) << "; " << mix("backward", backward) << "; "
                 << mix("deterministic backward", deterministic));
    CHECK(forward.ldmatrix > 0);
    CHECK(forward.mma > 0);
    CHECK(backward.ldmatrix > 0);
    CHECK(deterministic.ldmatrix > 0);
    CHECK(forward.ldmatrix_conflicts == 0);
    CHECK(backward.ldmatrix_conflicts == 0);
    CHECK(deterministic.ldmatrix_conflicts == 0);

    // The sm90 forward (128 x 128 tiles, causal): per head, documents of 100 and 200 tokens give
    // CTAs (doc 0, rows 0-127) with 1 key block, (doc 1, rows 0-127) with 1 and (doc 1, rows
    // 128-255) with 2: 3 Q tiles and 4 K/V blocks a head, each brought in by the TMA exactly once
    // (64-column panels), and per block and consumer warpgroup D/16 wgmma for S and 8 for P V.
    emu::reset_stats();
    cuda::flash_forward(s, t, nullptr, nullptr, cuda::FlashKernel::sm90);
    const emu::Stats sm90 = emu::stats();
    const std::uint64_t heads = 2, tile_bytes = 128 * static_cast<std::uint64_t>(D) * 2, panels = D / 64;
    const std::uint64_t q_tiles = 3 * heads, kv_blocks = 4 * heads;
    MESSAGE("D=" << D << ": sm90 forward " << sm90.wgmma << " wgmma, " << sm90.tma_loads << " TMA loads, "
                 << sm90.tma_bytes << " bytes, " << sm90.mbarrier_waits << " completed mbarrier waits");
    CHECK(sm90.tma_bytes == (q_tiles + 2 * kv_blocks) * tile_bytes);
    CHECK(sm90.tma_loads == (q_tiles + 2 * kv_blocks) * panels);
    CHECK(sm90.wgmma == kv_blocks * 2 * static_cast<std::uint64_t>(D / 16 + 8));
    CHECK(sm90.mma == 0);
    CHECK(sm90.ldmatrix == 0);

    // The sm90 deterministic backward against the atomic one: the same key-block kernel without
    // its dQ products (8 wgmma per step and consumer; steps: doc 0's key block sees 2 query
    // blocks of 64, doc 1's first 4 and its second 2, times 2 q heads), plus the dQ pass (128
    // query rows x 64 keys): per q head 3 CTAs bring Q and dO in once and 2 + 2 + 4 K/V blocks
    // once each; of the (block, consumer) pairs 13 have visible keys (the first consumer skips
    // the diagonal block past its rows), each D/16 wgmma for S, D/16 for dP and 4 for dQ.
    emu::reset_stats();
    cuda::flash_backward(s, t, ws.get(), nullptr, false, cuda::FlashKernel::sm90);
    const emu::Stats atomic90 = emu::stats();
    emu::reset_stats();
    cuda::flash_backward(s, t, ws.get(), nullptr, true, cuda::FlashKernel::sm90);
    const emu::Stats det90 = emu::stats();
    const std::uint64_t steps = (2 + 4 + 2) * heads, dq_ctas = 3 * heads, dq_blocks = 8 * heads, pairs = 13 * heads;
    const std::uint64_t row_bytes = static_cast<std::uint64_t>(D) * 2;
    MESSAGE("D=" << D << ": sm90 backward " << atomic90.wgmma << " wgmma, " << atomic90.tma_bytes
                 << " TMA bytes; deterministic " << det90.wgmma << " wgmma, " << det90.tma_bytes << " TMA bytes");
    CHECK(det90.tma_bytes - atomic90.tma_bytes == (dq_ctas * 2 * 128 + dq_blocks * 2 * 64) * row_bytes);
    CHECK(det90.tma_loads - atomic90.tma_loads == (dq_ctas * 2 + dq_blocks * 2) * panels);
    CHECK(det90.wgmma + steps * 2 * 8 - atomic90.wgmma == pairs * static_cast<std::uint64_t>(2 * D / 16 + 4));
    CHECK(det90.mma == 0);
  }
}
