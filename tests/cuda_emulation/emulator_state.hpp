// The CUDA emulator's internals shared by its scheduler (scheduler.cpp), its instructions
// (instructions.cpp, barriers.cpp, sm90_tma.cpp, sm90_wgmma.cpp) and its runtime API
// (runtime.cpp): the running block and thread, the warp-collective rendezvous, the block's
// synchronisation objects and asynchronous operations in flight, and the checks on addresses.
#pragma once

#include <boost/context/fiber.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "cuda_emulation.hpp"

namespace llmlab::emu::detail {

[[noreturn]] void fail(const std::string& what);  // throws std::runtime_error("cuda emulator: " + what)

// One 16-byte cp.async, held until a cp.async.wait_group of its thread releases its group.
struct Copy {
  std::uint32_t dst;
  const void* src;
  bool valid;
};

// One cp.reduce.async.bulk add of fp32 values, performed at issue or when a wait_group.read
// retires its group (done says which).
struct BulkReduce {
  float* dst;
  std::uint32_t src, bytes;
  bool done;
};

// What a suspended thread waits for, beyond the name in Thread::waiting, for deadlock reports.
enum class Wait : unsigned char { other, named_barrier, mbarrier };

struct Thread {
  boost::context::fiber fiber;  // the thread while it is suspended
  boost::context::fiber sink;   // the scheduler while the thread runs
  uint3 idx{};
  int warp = 0, lane = 0;
  bool done = false;
  // Barriers and collectives arrived at or passed, mbarrier arrivals, completed waits, TMA
  // issues: progress. A failing mbarrier.try_wait is not.
  std::uint64_t steps = 0;
  const char* waiting = nullptr;  // what the thread is suspended at, for deadlock reports
  Wait wait_kind = Wait::other;
  std::uint32_t wait_object = 0, wait_parity = 0;  // named barrier id or mbarrier address; parity
  std::vector<Copy> open;                     // cp.async since the last commit
  std::deque<std::vector<Copy>> committed;    // committed groups, oldest first
  std::vector<std::uint32_t> unfenced;               // 16-byte shared chunks st_shared wrote since its last fence.proxy.async
  std::vector<BulkReduce> bulk_open;                 // bulk reductions since the last commit
  std::deque<std::vector<BulkReduce>> bulk_groups;   // committed, not yet retired; oldest first
};

// Warp-collective instructions: each lane leaves its operands in its slot; the last lane to
// arrive computes every lane's result.
enum class Op : unsigned char {
  none, shfl, mma_bf16, mma_fp16, ldmatrix, ldmatrix_trans,
  wgmma, wgmma_fence, wgmma_commit, wgmma_wait, setmaxnreg, syncwarp,
};
const char* op_name(Op op);
struct LaneSlot {
  alignas(16) unsigned char in[48];
  alignas(16) unsigned char out[16];
};
// One warp's quarter of a wgmma.mma_async, recorded at issue, executed at its group's commit or
// at the wait_group that retires it.
struct Wgmma {
  MmaType type = MmaType::bf16;
  int n = 0;
  int quarter = 0;  // the warp's index in its warpgroup: it computes rows 16 quarter .. + 15
  bool rs = false, scale_d = false, trans_a = false, trans_b = false;
  std::uint64_t desc_a = 0, desc_b = 0;
  std::uint32_t a[32][4]{};  // rs: each lane's A fragment, copied at issue
  float* d[32]{};            // each lane's accumulator fragment (n / 2 floats)
};

struct Warp {
  int lanes = 0, arrived = 0;
  std::uint64_t generation = 0;
  Op op = Op::none;
  LaneSlot slot[32];
  bool wgmma_fenced = false;                    // a wgmma.fence since the start or the last wait_group
  std::vector<Wgmma> wgmma_open;                // issued since the last commit_group
  std::deque<std::vector<Wgmma>> wgmma_groups;  // committed, not yet executed; oldest first
  std::size_t wgmma_unretired = 0;              // committed groups no wait_group has retired yet
};

// bar.sync / bar.arrive barrier (id 0 is also __syncthreads').
struct NamedBarrier {
  int arrived = 0, expected = 0;  // expected: the thread count of the barrier's current use
  std::uint64_t generation = 0;
};
constexpr int kNamedBarriers = 16;

// An mbarrier object's state (PTX ISA, "mbarrier"), kept beside shared memory, keyed by address.
struct Mbarrier {
  std::uint32_t expected = 0;  // arrivals per phase, set by mbarrier.init
  std::uint32_t pending = 0;   // arrivals the current phase still waits for
  std::int64_t tx = 0;         // transaction bytes the current phase still waits for (may dip below 0)
  std::uint32_t phase = 0;     // phases completed
};

// A TMA tile load not landed yet: it keeps its bytes pending on its mbarrier.
struct TmaCopy {
  std::uint32_t dst = 0, bar = 0;
  std::array<std::uint64_t, 16> map{};  // the CUtensorMap, copied at issue
  std::array<int, 5> coords{};
};

struct Block {
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  NamedBarrier named[kNamedBarriers];
  std::map<std::uint32_t, Mbarrier> mbarriers;
  std::vector<TmaCopy> tma_in_flight;  // in issue order
  unsigned char* shared = nullptr;     // dynamic shared memory of the launch
  std::size_t shared_bytes = 0;
  // Per 16-byte chunk of shared memory: the thread whose st_shared (generic proxy) wrote it and
  // has not since executed fence.proxy.async, or -1.
  std::vector<int> unfenced_writer;
};

Block& block();    // the running block; fails outside a kernel
Thread& thread();  // the running thread
void yield();      // back to the scheduler until the thread is resumed
bool coin();       // a seeded random bit (LLMLAB_EMU_SEED), for adversarial choices

// Lane slot i's operands -> every lane's results, once all lanes of the warp have arrived.
template <typename Compute>
void collective(Op op, const void* in, std::size_t in_bytes, void* out, std::size_t out_bytes, Compute&& compute) {
  Thread& t = thread();
  Warp& w = block().warps[static_cast<std::size_t>(t.warp)];
  if (w.arrived > 0 && w.op != op)
    fail(std::string("warp divergence: lane ") + std::to_string(t.lane) + " of warp " + std::to_string(t.warp) +
         " executes " + op_name(op) + " while other lanes wait at " + op_name(w.op));
  w.op = op;
  std::memcpy(w.slot[t.lane].in, in, in_bytes);
  ++t.steps;
  const std::uint64_t generation = w.generation;
  if (++w.arrived == w.lanes) {
    compute(w);
    w.arrived = 0;
    ++w.generation;
  } else {
    t.waiting = op_name(op);
    while (w.generation == generation) yield();
    t.waiting = nullptr;
    ++t.steps;
  }
  std::memcpy(out, w.slot[t.lane].out, out_bytes);
}

// Shared-memory address [addr, addr + bytes) of the running block, checked for bounds and
// alignment; `what` names the instruction in the error.
unsigned char* shared_at(std::uint32_t addr, std::size_t bytes, const char* what, std::uint32_t alignment = 16);

// The shared-memory swizzle of TMA and of wgmma's descriptors, CUTLASS's Swizzle<B, 4, 3> on byte
// addresses with 2^B = span / 16: the 16-byte chunk index within a span-byte row (address bits
// 4 .. 3 + B) is XORed with address bits 7 .. 6 + B (the row index within a 8 * span-byte block).
inline std::uint32_t swizzle(std::uint32_t address, std::uint32_t span) {
  return span == 0 ? address : address ^ (((address >> 7) & (span / 16 - 1)) << 4);
}

// Fails when the async proxy (wgmma, bulk copies) is about to read shared [addr, addr + bytes)
// that a thread's st_shared wrote without a fence.proxy.async since: `what` names the reader.
void check_async_proxy_read(const Block& b, std::uint32_t addr, std::size_t bytes, const char* what);

// Runs the thread's outstanding cp.async groups, oldest first, until `keep` remain.
void complete_copies(Thread& t, std::size_t keep);
// Whether [p, p + bytes) lies inside one cudaMalloc allocation.
bool in_device_allocation(const void* p, std::size_t bytes);

// barriers.cpp: the mbarrier at `bar` (checked: aligned, in shared memory, initialised), the
// complete_tx a landing TMA copy performs on it, and what a suspended thread waits for.
Mbarrier& mbarrier_at(Block& b, std::uint32_t bar, const char* what);
void complete_tx(Block& b, std::uint32_t bar, std::uint32_t bytes);
std::string describe_wait(const Block& b, const Thread& t);

// sm90_tma.cpp: TMA copies in flight land when a thread polls their mbarrier, each with
// probability 1/16 at every scheduling round, and all when the block ends.
void land_tma_on(Block& b, std::uint32_t bar);
void land_tma_at_random(Block& b);
void land_all_tma(Block& b);
// Fails when the thread ends with bulk reductions no wait_group.read has retired.
void check_bulk_retired(const Thread& t);

}  // namespace llmlab::emu::detail
