// wgmma.mma_async.sync.aligned.m64nNk16.f32.{bf16,f16} from the PTX ISA's register fragments and
// shared-memory matrix descriptors, with wgmma.fence / commit_group / wait_group; and setmaxnreg.
// Each warp of a warpgroup runs its instructions as a warp collective and computes its own 16 rows.
//
// Descriptor layouts (CUTLASS cute/atom/mma_traits_sm90_gmma.hpp, make_gmma_desc, which states the
// ISA's canonical layouts in 16-byte units; T = 8 16-bit elements). Element (mn, k), k < 16, of a
// 16-bit operand (mn: A's row m, B's column n) lies at byte address, before the swizzle:
//   K-major  (trans 0), no swizzle:  start + (mn/8) SBO + (mn%8) 16 + (k/8) LBO + (k%8) 2
//                                    ((8,m),(T,2k)):((1T,SBO),(1,LBO))
//   K-major, swizzle of span S bytes (32, 64, 128): start + (mn/8) SBO + (mn%8) S + 2k; LBO unused
//                                    ((8,m),(T,2)):((S/16 T,SBO),(1,T))
//   MN-major (trans 1), no swizzle:  start + (mn/8) SBO + (mn%8) 2 + (k/8) LBO + (k%8) 16
//                                    ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))
//   MN-major, swizzle of span S:     start + (mn/(S/2)) LBO + (mn%(S/2)) 2 + (k/8) SBO + (k%8) S
//                                    ((T,S/16,m),(8,k)):((1,T,LBO),(S/16 T,SBO))
// then the swizzle (detail::swizzle) applied to the whole address, so that a start address moved
// by 32 bytes inside a 1024-byte-aligned 128-byte-swizzled atom selects its columns 16..31.
#include <algorithm>

#include <fmt/format.h>

#include "emulator_state.hpp"

namespace llmlab::emu {
namespace detail {
namespace {

struct Descriptor {
  std::uint32_t start, lbo, sbo;  // bytes
  std::uint32_t span;             // swizzle row bytes: 0 (none), 32, 64, 128
};

// Bits 0-13 start address, 16-29 leading byte offset, 32-45 stride byte offset (all >> 4),
// 49-51 base offset, 62-63 swizzle (0 none, 1 128B, 2 64B, 3 32B).
Descriptor decode(std::uint64_t desc, const char* operand) {
  const auto field = [desc](int bit) { return static_cast<std::uint32_t>((desc >> bit) & 0x3fff) << 4; };
  if (((desc >> 49) & 7) != 0)
    fail(fmt::format("wgmma.mma_async: the {} descriptor {:#018x} has a nonzero base offset, which is not emulated "
                     "(swizzled tiles must start on their pattern's 1024/512/256-byte boundary)",
                     operand, desc));
  static constexpr std::uint32_t kSpans[4] = {0, 128, 64, 32};
  return {field(0), field(16), field(32), kSpans[desc >> 62]};
}

std::uint32_t element_address(const Descriptor& d, int mn_index, int k_index, bool mn_major) {
  const auto mn = static_cast<std::uint32_t>(mn_index), k = static_cast<std::uint32_t>(k_index);
  std::uint32_t at;
  if (d.span == 0)
    at = mn_major ? d.start + mn / 8 * d.sbo + mn % 8 * 2 + k / 8 * d.lbo + k % 8 * 16
                  : d.start + mn / 8 * d.sbo + mn % 8 * 16 + k / 8 * d.lbo + k % 8 * 2;
  else
    at = mn_major ? d.start + mn / (d.span / 2) * d.lbo + mn % (d.span / 2) * 2 + k / 8 * d.sbo + k % 8 * d.span
                  : d.start + mn / 8 * d.sbo + mn % 8 * d.span + k * 2;
  return swizzle(at, d.span);
}

float element(std::uint16_t bits, MmaType type) {
  return type == MmaType::bf16 ? bf16_to_float(bits) : fp16_to_float(bits);
}

float shared_element(const Descriptor& d, int mn, int k, bool mn_major, MmaType type) {
  std::uint16_t bits;
  const std::uint32_t at = element_address(d, mn, k, mn_major);
  check_async_proxy_read(block(), at, 2, "wgmma.mma_async");
  std::memcpy(&bits, shared_at(at, 2, "wgmma.mma_async operand", 2), 2);
  return element(bits, type);
}

// D rows 16 quarter + i of the warp = A rows (16 x 16) * B (16 x n) + (scale_d ? D : 0), summed
// in k order in fp32 (16-bit products are exact in fp32). Accumulator fragment (PTX ISA, wgmma
// m64nNk16 register fragments, .f32 D; CUTLASS CLayout_64xN): lane l = 4 g + t holds, for n-tile
// j, d[4j], d[4j+1] = D[g][8j+2t, 8j+2t+1] and d[4j+2], d[4j+3] = D[g+8][8j+2t, 8j+2t+1].
void execute(const Wgmma& op) {
  float A[16][16], B[16][256];
  if (op.rs) {
    // The mma.m16n8k16 A fragment: a[0] = A[g][2t..], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..],
    // a[3] = A[g+8][2t+8..], lower column in the low half.
    for (int l = 0; l < 32; ++l)
      for (int r = 0; r < 4; ++r) {
        const int row = l / 4 + 8 * (r % 2), col = 2 * (l % 4) + 8 * (r / 2);
        A[row][col] = element(static_cast<std::uint16_t>(op.a[l][r] & 0xffff), op.type);
        A[row][col + 1] = element(static_cast<std::uint16_t>(op.a[l][r] >> 16), op.type);
      }
  } else {
    const Descriptor da = decode(op.desc_a, "A");
    for (int i = 0; i < 16; ++i)
      for (int k = 0; k < 16; ++k) A[i][k] = shared_element(da, 16 * op.quarter + i, k, op.trans_a, op.type);
  }
  const Descriptor db = decode(op.desc_b, "B");
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < op.n; ++j) B[k][j] = shared_element(db, j, k, op.trans_b, op.type);
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    float* d = op.d[l];
    for (int e = 0; e < op.n / 2; ++e) {
      const int row = g + 8 * ((e / 2) % 2), col = 8 * (e / 4) + 2 * t + e % 2;
      float acc = op.scale_d ? d[e] : 0.0f;
      for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
      d[e] = acc;
    }
  }
}

// Executes the warp's committed groups, oldest first, until `keep` remain.
void retire(Warp& w, std::size_t keep) {
  while (w.wgmma_groups.size() > keep) {
    for (const Wgmma& op : w.wgmma_groups.front()) execute(op);
    w.wgmma_groups.pop_front();
  }
}

int warp_index(const Warp& w) { return static_cast<int>(&w - block().warps.data()); }

// The operands each lane gives a wgmma.mma_async; all but d and a must agree across the warp.
struct WgmmaIn {
  float* d;
  std::uint64_t desc_a, desc_b;
  std::uint32_t a[4];
  std::int32_t n;
  std::uint8_t type, rs, scale_d, trans;  // trans: bit 0 A, bit 1 B
};
static_assert(sizeof(WgmmaIn) <= sizeof(LaneSlot::in));

bool same_instruction(const WgmmaIn& x, const WgmmaIn& y) {
  return x.desc_a == y.desc_a && x.desc_b == y.desc_b && x.n == y.n && x.type == y.type && x.rs == y.rs &&
         x.scale_d == y.scale_d && x.trans == y.trans;
}

void issue(const WgmmaIn& in) {
  const char* name = in.rs ? "wgmma_rs" : "wgmma_ss";
  if (in.n < 8 || in.n > 256 || in.n % 8 != 0)
    fail(fmt::format("{} with N = {} (m64nNk16: N is a multiple of 8 from 8 to 256)", name, in.n));
  int dummy = 0;
  collective(Op::wgmma, &in, sizeof in, &dummy, 0, [name](Warp& w) {
    const int warp = warp_index(w);
    const std::size_t group_end = static_cast<std::size_t>(warp / 4 * 4 + 4);
    if (w.lanes != 32 || block().warps.size() < group_end || block().warps[group_end - 1].lanes != 32)
      fail(fmt::format("{} by warp {}, whose warpgroup (warps {}..{}) is not whole in this block", name, warp,
                       group_end - 4, group_end - 1));
    WgmmaIn first;
    std::memcpy(&first, w.slot[0].in, sizeof first);
    Wgmma op;
    for (int l = 0; l < 32; ++l) {
      WgmmaIn mine;
      std::memcpy(&mine, w.slot[l].in, sizeof mine);
      if (!same_instruction(mine, first))
        fail(fmt::format("{} in warp {}: lane {} gives other descriptors, N, type or flags than lane 0", name, warp, l));
      op.d[l] = mine.d;
      std::memcpy(op.a[l], mine.a, sizeof mine.a);
    }
    // PTX ISA: wgmma.fence before the first wgmma.mma_async, and between a register access and a
    // wgmma.mma_async using that register; after a wait_group the accumulators are the threads'
    // again, so a wgmma.mma_async with no fence since then is reported.
    if (!w.wgmma_fenced)
      fail(fmt::format("{} in warp {} with no wgmma.fence since the warp's start or its last wgmma.wait_group",
                       name, warp));
    op.type = first.type == 0 ? MmaType::bf16 : MmaType::fp16;
    op.n = first.n;
    op.quarter = warp % 4;
    op.rs = first.rs != 0;
    op.scale_d = first.scale_d != 0;
    op.trans_a = (first.trans & 1) != 0;
    op.trans_b = (first.trans & 2) != 0;
    op.desc_a = first.desc_a;
    op.desc_b = first.desc_b;
    w.wgmma_open.push_back(op);
    if (op.quarter == 0) ++stats().wgmma;
  });
}

// A warp-uniform integer operand of a warp-collective instruction.
void uniform(Op op, int value, void (*compute)(Warp&, int)) {
  int dummy = 0;
  collective(op, &value, sizeof value, &dummy, 0, [op, value, compute](Warp& w) {
    for (int l = 0; l < w.lanes; ++l) {
      int mine;
      std::memcpy(&mine, w.slot[l].in, sizeof mine);
      if (mine != value)
        fail(fmt::format("{} in warp {}: lane {} gives {}, another lane {}", op_name(op), warp_index(w), l, mine,
                         value));
    }
    compute(w, value);
  });
}

}  // namespace
}  // namespace detail

using detail::fail;

void wgmma_fence() {
  detail::uniform(detail::Op::wgmma_fence, 0, [](detail::Warp& w, int) { w.wgmma_fenced = true; });
}

// A group executes at random at its commit (with the older ones still pending) or at the
// wait_group that retires it: the earliest and the latest moments the PTX memory model allows.
void wgmma_commit_group() {
  detail::uniform(detail::Op::wgmma_commit, 0, [](detail::Warp& w, int) {
    w.wgmma_groups.push_back(std::move(w.wgmma_open));
    w.wgmma_open.clear();
    ++w.wgmma_unretired;
    if (detail::coin()) detail::retire(w, 0);
  });
}

void wgmma_wait_group(int pending) {
  if (pending < 0) fail("wgmma.wait_group with a negative count");
  detail::uniform(detail::Op::wgmma_wait, pending, [](detail::Warp& w, int keep) {
    detail::retire(w, static_cast<std::size_t>(keep));
    w.wgmma_unretired = std::min(w.wgmma_unretired, static_cast<std::size_t>(keep));
    w.wgmma_fenced = false;
  });
}

void wgmma_ss(MmaType type, int n, float* d, std::uint64_t desc_a, std::uint64_t desc_b, bool scale_d, bool trans_a,
              bool trans_b) {
  detail::issue({d, desc_a, desc_b, {}, n, static_cast<std::uint8_t>(type), 0, scale_d,
                 static_cast<std::uint8_t>((trans_a ? 1 : 0) | (trans_b ? 2 : 0))});
}

void wgmma_rs(MmaType type, int n, float* d, const std::uint32_t (&a)[4], std::uint64_t desc_b, bool scale_d,
              bool trans_b) {
  detail::issue({d, 0, desc_b, {a[0], a[1], a[2], a[3]}, n, static_cast<std::uint8_t>(type), 1, scale_d,
                 static_cast<std::uint8_t>(trans_b ? 2 : 0)});
}

// setmaxnreg.{inc,dec}.sync.aligned.u32: the count lies in 24..256 and is a multiple of 8. The
// emulator has no register file: nothing else happens.
void setmaxnreg(int registers, bool increase) {
  if (registers < 24 || registers > 256 || registers % 8 != 0)
    fail(fmt::format("setmaxnreg.{} {}: the count is a multiple of 8 from 24 to 256", increase ? "inc" : "dec",
                     registers));
  detail::uniform(detail::Op::setmaxnreg, increase ? registers : -registers, [](detail::Warp&, int) {});
}

}  // namespace llmlab::emu
