// The CUDA emulator's internals shared by its scheduler (scheduler.cpp), its instructions
// (instructions.cpp) and its runtime API (runtime.cpp): the running block and thread, the
// warp-collective rendezvous, and the checks on addresses.
#pragma once

#include <boost/context/fiber.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
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

struct Thread {
  boost::context::fiber fiber;  // the thread while it is suspended
  boost::context::fiber sink;   // the scheduler while the thread runs
  uint3 idx{};
  int warp = 0, lane = 0;
  bool done = false;
  std::uint64_t steps = 0;        // barriers and collectives arrived at or passed: progress
  const char* waiting = nullptr;  // what the thread is suspended at, for deadlock reports
  std::vector<Copy> open;                     // cp.async since the last commit
  std::deque<std::vector<Copy>> committed;    // committed groups, oldest first
};

// Warp-collective instructions: each lane leaves its operands in its slot; the last lane to
// arrive computes every lane's result.
enum class Op : unsigned char { none, shfl, mma_bf16, mma_fp16, ldmatrix, ldmatrix_trans };
const char* op_name(Op op);
struct LaneSlot {
  alignas(16) unsigned char in[48];
  alignas(16) unsigned char out[16];
};
struct Warp {
  int lanes = 0, arrived = 0;
  std::uint64_t generation = 0;
  Op op = Op::none;
  LaneSlot slot[32];
};

struct Block {
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  int barrier_arrived = 0;
  std::uint64_t barrier_generation = 0;
  unsigned char* shared = nullptr;  // dynamic shared memory of the launch
  std::size_t shared_bytes = 0;
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

// Runs the thread's outstanding cp.async groups, oldest first, until `keep` remain.
void complete_copies(Thread& t, std::size_t keep);
// Whether [p, p + bytes) lies inside one cudaMalloc allocation.
bool in_device_allocation(const void* p, std::size_t bytes);

}  // namespace llmlab::emu::detail
