// The emulator's grid and block scheduler: every thread of a block is a fiber; the scheduler
// resumes the unfinished ones in a shuffled order, round after round, until all have returned.
// A thread gives control back only at a barrier, a warp-collective instruction or a failing
// mbarrier.try_wait, so a round where no thread gets further is a deadlock, reported instead of
// hanging. TMA copies in flight land between rounds at random.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

#include "emulator_state.hpp"

uint3 threadIdx{};
uint3 blockIdx{};
dim3 blockDim{};
dim3 gridDim{};

namespace llmlab::emu {
namespace detail {
namespace {

namespace ctx = boost::context;

// H100/H200: 48 KB of dynamic shared memory without opting in, 227 KB with it.
constexpr std::size_t kDefaultSharedLimit = 48 * 1024, kMaxSharedLimit = 227 * 1024;
constexpr std::size_t kStackBytes = 256 * 1024;

// Fiber stacks with a guard page below each, kept for reuse: a block of 256 threads would
// otherwise map and unmap 256 stacks.
class StackPool {
 public:
  ctx::stack_context allocate() {
    if (free_.empty()) {
      const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), total = kStackBytes + page;
      void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (base == MAP_FAILED) throw std::bad_alloc();
      mprotect(base, page, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
      ctx::stack_context sc;
      sc.size = kStackBytes;
      sc.sp = static_cast<char*>(base) + total;
      return sc;
    }
    ctx::stack_context sc = free_.back();
    free_.pop_back();
    return sc;
  }
  void deallocate(ctx::stack_context& sc) { free_.push_back(sc); }

 private:
  std::vector<ctx::stack_context> free_;
};

struct PoolAllocator {  // Boost.Context's StackAllocator, by reference to the pool
  StackPool* pool;
  ctx::stack_context allocate() { return pool->allocate(); }
  void deallocate(ctx::stack_context& sc) { pool->deallocate(sc); }
};

StackPool& stack_pool() {
  static StackPool pool;
  return pool;
}

Block* g_block = nullptr;
Thread* g_thread = nullptr;
std::exception_ptr g_error;
Stats g_stats;
std::map<const void*, std::size_t> g_shared_limits;  // kernel -> cudaFuncAttributeMaxDynamicSharedMemorySize

std::mt19937& rng() {
  static std::mt19937 gen([] {
    const char* seed = std::getenv("LLMLAB_EMU_SEED");
    return seed ? static_cast<unsigned>(std::strtoul(seed, nullptr, 10)) : 1u;
  }());
  return gen;
}

std::string coords(uint3 v) { return fmt::format("({}, {}, {})", v.x, v.y, v.z); }

[[noreturn]] void report_deadlock(const Block& b) {
  std::map<std::string, int> at;
  for (const Thread& t : b.threads) ++at[describe_wait(b, t)];
  std::string what;
  for (const auto& [where, n] : at) what += fmt::format("{}{} {}", what.empty() ? "" : ", ", n, where);
  fail(fmt::format("deadlock in block {}: threads {} (a __syncthreads, named barrier or warp instruction that "
                   "some threads of the block or warp never reach, or an mbarrier phase nothing completes)",
                   coords(blockIdx), what));
}

// A warp's wgmma accumulators are its threads' registers (here: their stack frames), which are
// gone once the threads return.
void check_wgmma_retired(const Warp& w, int warp) {
  if (!w.wgmma_open.empty() || w.wgmma_unretired > 0)
    fail(fmt::format("warp {} returned with wgmma.mma_async operations no wgmma.wait_group retired", warp));
}

void run_block(const std::function<void()>& body, unsigned char* shared, std::size_t shared_bytes) {
  Block b;
  b.shared = shared;
  b.shared_bytes = shared_bytes;
  const unsigned n = blockDim.x * blockDim.y * blockDim.z;
  b.threads.resize(n);
  b.warps.resize((n + 31) / 32);
  for (unsigned i = 0; i < n; ++i) {
    Thread& t = b.threads[i];
    t.idx = {i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    t.warp = static_cast<int>(i / 32);
    t.lane = static_cast<int>(i % 32);
    ++b.warps[i / 32].lanes;
  }
  struct Reset {
    ~Reset() {
      g_block = nullptr;
      g_thread = nullptr;
    }
  } reset;
  g_block = &b;
  for (Thread& t : b.threads)
    t.fiber = ctx::fiber(std::allocator_arg, PoolAllocator{&stack_pool()}, [&t, &b, &body](ctx::fiber&& sink) {
      t.sink = std::move(sink);
      try {
        body();
        complete_copies(t, 0);  // what a thread leaves in flight still lands (and is checked)
        check_wgmma_retired(b.warps[static_cast<std::size_t>(t.warp)], t.warp);
        check_bulk_retired(t);
      } catch (const ctx::detail::forced_unwind&) {
        throw;  // the block is being torn down after an error
      } catch (...) {
        if (!g_error) g_error = std::current_exception();
      }
      t.done = true;
      return std::move(t.sink);
    });
  // Half the blocks have a straggler warp, resumed only when no other thread gets further.
  const int straggler = b.warps.size() > 1 && coin() ? static_cast<int>(rng()() % b.warps.size()) : -1;
  std::vector<unsigned> order(n);
  std::iota(order.begin(), order.end(), 0u);
  for (unsigned live = n; live > 0;) {
    land_tma_at_random(b);
    std::shuffle(order.begin(), order.end(), rng());
    bool progress = false;
    for (const bool stragglers : {false, true}) {
      if (stragglers && progress) break;
      for (unsigned i : order) {
        Thread& t = b.threads[i];
        if (t.done || (t.warp == straggler) != stragglers) continue;
        const std::uint64_t steps = t.steps;
        g_thread = &t;
        threadIdx = t.idx;
        t.fiber = std::move(t.fiber).resume();
        g_thread = nullptr;
        if (g_error) std::rethrow_exception(std::exchange(g_error, nullptr));  // ~Block unwinds the rest
        if (t.done) --live;
        progress = progress || t.done || t.steps != steps;
      }
    }
    if (!progress) report_deadlock(b);
  }
  land_all_tma(b);
  // bar.arrive without a matching bar.sync leaves a barrier half-arrived: the kernel's producer/
  // consumer accounting is off by one somewhere.
  for (int id = 0; id < kNamedBarriers; ++id)
    if (b.named[id].arrived != 0)
      fail("block ends with barrier " + std::to_string(id) + " half-arrived (" + std::to_string(b.named[id].arrived) +
           " of " + std::to_string(b.named[id].expected) + " threads): a bar.arrive no bar.sync matched");
  ++g_stats.blocks;
}

}  // namespace

void fail(const std::string& what) { throw std::runtime_error("cuda emulator: " + what); }

Block& block() {
  if (!g_block) fail("a device function was called outside a kernel");
  return *g_block;
}

Thread& thread() {
  if (!g_thread) fail("a device function was called outside a kernel");
  return *g_thread;
}

void yield() {
  Thread& t = *g_thread;
  t.sink = std::move(t.sink).resume();
}

bool coin() { return (rng()() & 1) != 0; }

const char* op_name(Op op) {
  switch (op) {
    case Op::none: return "nothing";
    case Op::shfl: return "shfl.sync";
    case Op::mma_bf16: return "mma.sync (bf16)";
    case Op::mma_fp16: return "mma.sync (fp16)";
    case Op::ldmatrix: return "ldmatrix.x4";
    case Op::ldmatrix_trans: return "ldmatrix.x4.trans";
    case Op::wgmma: return "wgmma.mma_async";
    case Op::wgmma_fence: return "wgmma.fence";
    case Op::wgmma_commit: return "wgmma.commit_group";
    case Op::wgmma_wait: return "wgmma.wait_group";
    case Op::setmaxnreg: return "setmaxnreg";
    case Op::syncwarp: return "__syncwarp";
  }
  return "?";
}

}  // namespace detail

using detail::fail;

Stats& stats() { return detail::g_stats; }
void reset_stats() { detail::g_stats = {}; }

cudaError_t set_max_dynamic_shared(const void* kernel, int bytes) {
  if (bytes < 0 || static_cast<std::size_t>(bytes) > detail::kMaxSharedLimit) return cudaErrorInvalidValue;
  detail::g_shared_limits[kernel] = static_cast<std::size_t>(bytes);
  return cudaSuccess;
}

void run_grid(const void* kernel, dim3 grid, dim3 block, std::size_t dynamic_shared,
              const std::function<void()>& body) {
  if (detail::g_block) fail("a kernel was launched from device code");
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0)
    fail("launch with an empty grid or block (CUDA: invalid configuration argument)");
  if (threads > 1024 || block.z > 64 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    fail("launch configuration out of range: grid " + detail::coords({grid.x, grid.y, grid.z}) + ", block " +
         detail::coords({block.x, block.y, block.z}));
  const auto limit = detail::g_shared_limits.find(kernel);
  const std::size_t allowed = limit == detail::g_shared_limits.end() ? detail::kDefaultSharedLimit : limit->second;
  if (dynamic_shared > allowed)
    fail(fmt::format("launch asks for {} bytes of dynamic shared memory; the kernel allows {} "
                     "(cudaFuncAttributeMaxDynamicSharedMemorySize)",
                     dynamic_shared, allowed));
  // 1024-byte aligned, the largest alignment shared data asks for (128-byte swizzled TMA boxes and
  // wgmma tiles), so host addresses agree with shared addresses in their low 10 bits.
  std::vector<unsigned char> arena(dynamic_shared + 1024);
  auto* shared = reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(arena.data()) + 1023) & ~1023ull);
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = {x, y, z};
        std::memset(shared, 0xff, dynamic_shared);  // NaN in every float format: unwritten reads show
        detail::run_block(body, shared, dynamic_shared);
      }
}

}  // namespace llmlab::emu
