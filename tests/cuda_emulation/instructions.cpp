// The emulated instructions, from the PTX ISA's definitions: shfl.sync.bfly, mma.sync.aligned
// .m16n8k16.row.col.f32.{bf16,f16}, ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 and
// cp.async.cg.shared.global (16 bytes, zero-fill) with commit_group / wait_group.
#include <algorithm>
#include <array>

#include "emulator_state.hpp"

namespace llmlab::emu {
namespace detail {
namespace {

std::uint32_t read_u32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void write_u32(unsigned char* p, std::uint32_t v) { std::memcpy(p, &v, 4); }

void execute(const Copy& c) {
  unsigned char* dst = shared_at(c.dst, 16, "cp.async");
  if (!c.valid) {
    std::memset(dst, 0, 16);
    return;
  }
  if (reinterpret_cast<std::uintptr_t>(c.src) % 16 != 0) fail("cp.async from a global address not 16-byte aligned");
  if (!in_device_allocation(c.src, 16)) fail("cp.async reads 16 bytes outside every device allocation");
  std::memcpy(dst, c.src, 16);
}

float element(std::uint16_t bits, bool bf16) { return bf16 ? bf16_to_float(bits) : fp16_to_float(bits); }

}  // namespace

unsigned char* shared_at(std::uint32_t addr, std::size_t bytes, const char* what, std::uint32_t alignment) {
  Block& b = block();
  const bool aligned = addr % alignment == 0, inside = std::size_t{addr} + bytes <= b.shared_bytes;
  if (!aligned || !inside)
    fail(std::string(what) + " at shared address " + std::to_string(addr) +
         (aligned ? "" : " (not " + std::to_string(alignment) + "-byte aligned)") +
         (inside ? "" : ": " + std::to_string(bytes) + " bytes there lie outside the block's " +
                            std::to_string(b.shared_bytes) + " bytes of dynamic shared memory"));
  return b.shared + addr;
}

void complete_copies(Thread& t, std::size_t keep) {
  if (keep == 0 && !t.open.empty()) t.committed.push_back(std::move(t.open)), t.open.clear();
  while (t.committed.size() > keep) {
    for (const Copy& c : t.committed.front()) execute(c);
    t.committed.pop_front();
  }
}

}  // namespace detail

using detail::fail;
using detail::Op;
using detail::Warp;

void syncwarp() {
  const char none = 0;
  char out = 0;
  detail::collective(Op::syncwarp, &none, 1, &out, 1, [](Warp&) {});
}

std::uint32_t shfl_xor(std::uint32_t value, int lane_mask) {
  if (lane_mask < 0 || lane_mask > 31) fail("shfl.sync.bfly lane mask " + std::to_string(lane_mask));
  struct In {
    std::uint32_t value;
    int mask;
  } in{value, lane_mask};
  std::uint32_t out = 0;
  detail::collective(Op::shfl, &in, sizeof in, &out, 4, [](Warp& w) {
    for (int l = 0; l < w.lanes; ++l) {
      In mine;
      std::memcpy(&mine, w.slot[l].in, sizeof mine);
      const int src = l ^ mine.mask;
      if (src >= w.lanes) fail("shfl.sync.bfly reads lane " + std::to_string(src) + " of a partial warp");
      std::memcpy(w.slot[l].out, w.slot[src].in, 4);
    }
  });
  return out;
}

// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16" with 16-bit A/B and fp32 C/D), lane
// l = 4 g + t: A (16x16) a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 =
// A[g+8][2t+8..]; B (16x8, k x n) b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; C/D c0,c1 =
// C[g][2t..2t+1], c2,c3 = C[g+8][2t..]. The lower-indexed element is the register's low half.
void mma_m16n8k16(MmaType type, float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  struct In {
    std::uint32_t a[4], b[2];
    float c[4];
  } in{{a[0], a[1], a[2], a[3]}, {b0, b1}, {c[0], c[1], c[2], c[3]}};
  const bool bf16 = type == MmaType::bf16;
  detail::collective(bf16 ? Op::mma_bf16 : Op::mma_fp16, &in, sizeof in, c, sizeof c, [bf16](Warp& w) {
    if (w.lanes != 32) fail("mma.sync by a partial warp");
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
      In f;
      std::memcpy(&f, w.slot[l].in, sizeof f);
      const int g = l / 4, t = l % 4;
      for (int r = 0; r < 4; ++r) {
        const int row = g + 8 * (r % 2), col = 2 * t + 8 * (r / 2);
        A[row][col] = detail::element(static_cast<std::uint16_t>(f.a[r] & 0xffff), bf16);
        A[row][col + 1] = detail::element(static_cast<std::uint16_t>(f.a[r] >> 16), bf16);
      }
      for (int r = 0; r < 2; ++r) {
        B[2 * t + 8 * r][g] = detail::element(static_cast<std::uint16_t>(f.b[r] & 0xffff), bf16);
        B[2 * t + 8 * r + 1][g] = detail::element(static_cast<std::uint16_t>(f.b[r] >> 16), bf16);
      }
      C[g][2 * t] = f.c[0];
      C[g][2 * t + 1] = f.c[1];
      C[g + 8][2 * t] = f.c[2];
      C[g + 8][2 * t + 1] = f.c[3];
    }
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j) {
        float acc = C[i][j];
        for (int k = 0; k < 16; ++k) acc += A[i][k] * B[k][j];  // 16-bit products are exact in fp32
        C[i][j] = acc;
      }
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      const float d[4] = {C[g][2 * t], C[g][2 * t + 1], C[g + 8][2 * t], C[g + 8][2 * t + 1]};
      std::memcpy(w.slot[l].out, d, sizeof d);
    }
    ++stats().mma;
  });
}

// ldmatrix .x4: lanes 8j..8j+7 give the addresses of rows 0..7 of matrix j (16 bytes each);
// register j of lane l gets matrix j's row l/4, elements 2(l%4), 2(l%4)+1, or with .trans the
// transpose's: elements [2(l%4)][l/4] and [2(l%4)+1][l/4].
void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t shared_address, bool trans) {
  detail::collective(trans ? Op::ldmatrix_trans : Op::ldmatrix, &shared_address, 4, r, sizeof r, [trans](Warp& w) {
    if (w.lanes != 32) fail("ldmatrix by a partial warp");
    std::uint16_t m[4][8][8];
    for (int j = 0; j < 4; ++j) {
      std::array<int, 8> groups{};  // 16-byte bank groups hit by this matrix's 8 rows
      for (int i = 0; i < 8; ++i) {
        const std::uint32_t addr = detail::read_u32(w.slot[8 * j + i].in);
        std::memcpy(m[j][i], detail::shared_at(addr, 16, "ldmatrix"), 16);
        ++groups[(addr / 16) % 8];
      }
      stats().ldmatrix_conflicts += static_cast<std::uint64_t>(*std::max_element(groups.begin(), groups.end()) - 1);
    }
    for (int l = 0; l < 32; ++l)
      for (int j = 0; j < 4; ++j) {
        const int a = l / 4, b = 2 * (l % 4);
        const std::uint16_t lo = trans ? m[j][b][a] : m[j][a][b], hi = trans ? m[j][b + 1][a] : m[j][a][b + 1];
        detail::write_u32(w.slot[l].out + 4 * j, static_cast<std::uint32_t>(lo) | (static_cast<std::uint32_t>(hi) << 16));
      }
    ++stats().ldmatrix;
  });
}

// A copy lands at a moment chosen at random between the earliest and the latest the memory
// model allows: at issue, or when a wait_group releases its group. Late landings expose a read
// before the wait; early ones a write over data other warps still read (a missing barrier).
void cp_async_16(std::uint32_t shared_dst, const void* global_src, bool valid) {
  detail::shared_at(shared_dst, 16, "cp.async");
  if (detail::coin())
    detail::execute({shared_dst, global_src, valid});
  else
    detail::thread().open.push_back({shared_dst, global_src, valid});
  ++stats().cp_async;
}

void cp_async_commit() {
  detail::Thread& t = detail::thread();
  t.committed.push_back(std::move(t.open));
  t.open.clear();
}

void cp_async_wait(int pending_groups) {
  if (pending_groups < 0) fail("cp.async.wait_group with a negative count");
  detail::complete_copies(detail::thread(), static_cast<std::size_t>(pending_groups));
}

unsigned char* dynamic_shared_memory() { return detail::block().shared; }

std::uint32_t shared_address(const void* p) {
  const detail::Block& b = detail::block();
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < b.shared || c > b.shared + b.shared_bytes)
    fail("a shared-memory address was taken of memory outside the block's dynamic shared memory");
  return static_cast<std::uint32_t>(c - b.shared);
}

}  // namespace llmlab::emu
