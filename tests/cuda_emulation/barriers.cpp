// The emulated barriers, from the PTX ISA's definitions: bar.sync / bar.arrive on the 16 named
// barriers of a block (__syncthreads is bar.sync 0 with the block's thread count), and mbarrier
// objects (init, arrive, arrive.expect_tx, try_wait.parity, and the complete_tx of TMA copies).
// An mbarrier's state lives in a table beside shared memory keyed by its shared address; its 8
// bytes of shared memory are not used.
#include <fmt/format.h>

#include "emulator_state.hpp"

namespace llmlab::emu {
namespace detail {
namespace {

// PTX ISA, mbarrier: the arrival count lies in [1, 2^20 - 1], the tx-count in [-(2^20 - 1), 2^20 - 1].
constexpr std::int64_t kMaxCount = (1 << 20) - 1;

// bar.sync (wait = true) or bar.arrive: one more of `threads` threads has arrived at barrier id.
void named_barrier(int id, int threads, bool wait, const char* what) {
  Thread& t = thread();
  Block& b = block();
  NamedBarrier& nb = b.named[id];
  if (nb.arrived > 0 && nb.expected != threads)
    fail(fmt::format("{} on barrier {} for {} threads while {} threads are at it for {}", what, id, threads,
                     nb.arrived, nb.expected));
  nb.expected = threads;
  ++t.steps;
  const std::uint64_t generation = nb.generation;
  if (++nb.arrived == threads) {
    nb.arrived = 0;
    ++nb.generation;
    return;
  }
  if (!wait) return;
  t.waiting = what;
  t.wait_kind = Wait::named_barrier;
  t.wait_object = static_cast<std::uint32_t>(id);
  while (nb.generation == generation) yield();
  t.waiting = nullptr;
  t.wait_kind = Wait::other;
  ++t.steps;
}

void check_named(int id, int threads, const char* what) {
  const std::size_t warps = block().warps.size();
  if (id < 0 || id >= kNamedBarriers) fail(fmt::format("{} on barrier {} (ids are 0..15)", what, id));
  if (threads <= 0 || threads % 32 != 0 || static_cast<std::size_t>(threads) > 32 * warps)
    fail(fmt::format("{} {} for {} threads: a positive multiple of 32, at most the block's {} warps' threads", what,
                     id, threads, warps));
}

// A phase completes when no arrival and no transaction byte is pending; the next one then
// waits for the count given at init again.
void complete_phase_if_done(std::uint32_t bar, Mbarrier& m) {
  if (m.pending > 0) return;
  if (m.tx < 0)
    fail(fmt::format("the mbarrier at shared {:#x} completed {} more transaction bytes than expected in phase {}",
                     bar, -m.tx, m.phase));
  if (m.tx > 0) return;
  ++m.phase;
  m.pending = m.expected;
}

}  // namespace

Mbarrier& mbarrier_at(Block& b, std::uint32_t bar, const char* what) {
  shared_at(bar, 8, what, 8);
  const auto it = b.mbarriers.find(bar);
  if (it == b.mbarriers.end())
    fail(fmt::format("{} on shared address {:#x}, where no mbarrier was initialised (mbarrier.init)", what, bar));
  return it->second;
}

void complete_tx(Block& b, std::uint32_t bar, std::uint32_t bytes) {
  Mbarrier& m = mbarrier_at(b, bar, "complete_tx of a TMA copy");
  m.tx -= bytes;
  if (m.tx < -kMaxCount)
    fail(fmt::format("the mbarrier at shared {:#x}: tx-count {} below the PTX range", bar, m.tx));
  complete_phase_if_done(bar, m);
}

std::string describe_wait(const Block& b, const Thread& t) {
  if (t.done) return "returned";
  if (!t.waiting) return "running";
  if (t.wait_kind == Wait::named_barrier) {
    const NamedBarrier& nb = b.named[t.wait_object];
    return fmt::format("{} (barrier {}: {} of {} threads arrived)", t.waiting, t.wait_object, nb.arrived,
                       nb.expected);
  }
  if (t.wait_kind == Wait::mbarrier) {
    const auto it = b.mbarriers.find(t.wait_object);
    if (it == b.mbarriers.end()) return fmt::format("{} on shared {:#x}", t.waiting, t.wait_object);
    const Mbarrier& m = it->second;
    return fmt::format("{}({}) on the mbarrier at shared {:#x} (phase {}: {} of {} arrivals and {} transaction "
                       "bytes pending)",
                       t.waiting, t.wait_parity, t.wait_object, m.phase, m.pending, m.expected, m.tx);
  }
  return t.waiting;
}

}  // namespace detail

using detail::fail;

void syncthreads() { detail::named_barrier(0, static_cast<int>(detail::block().threads.size()), true, "__syncthreads"); }

void named_barrier_sync(int id, int threads) {
  detail::check_named(id, threads, "bar.sync");
  detail::named_barrier(id, threads, true, "bar.sync");
}

void named_barrier_arrive(int id, int threads) {
  detail::check_named(id, threads, "bar.arrive");
  detail::named_barrier(id, threads, false, "bar.arrive");
}

void mbarrier_init(std::uint32_t bar, std::uint32_t arrivals) {
  detail::Block& b = detail::block();
  detail::shared_at(bar, 8, "mbarrier.init", 8);
  if (arrivals == 0 || arrivals > detail::kMaxCount)
    fail(fmt::format("mbarrier.init at shared {:#x} with count {} (PTX: 1 to 2^20 - 1)", bar, arrivals));
  b.mbarriers[bar] = {arrivals, arrivals, 0, 0};
  ++detail::thread().steps;
}

void mbarrier_arrive(std::uint32_t bar) {
  detail::Block& b = detail::block();
  detail::Mbarrier& m = detail::mbarrier_at(b, bar, "mbarrier.arrive");
  if (m.pending == 0)
    fail(fmt::format("mbarrier.arrive on the mbarrier at shared {:#x}: more arrivals than its count {} in phase {} "
                     "(which still waits for {} transaction bytes)",
                     bar, m.expected, m.phase, m.tx));
  --m.pending;
  ++detail::thread().steps;
  detail::complete_phase_if_done(bar, m);
}

void mbarrier_arrive_expect_tx(std::uint32_t bar, std::uint32_t tx_bytes) {
  detail::Mbarrier& m = detail::mbarrier_at(detail::block(), bar, "mbarrier.arrive.expect_tx");
  m.tx += tx_bytes;
  if (m.tx > detail::kMaxCount)
    fail(fmt::format("mbarrier.arrive.expect_tx on the mbarrier at shared {:#x}: tx-count {} above the PTX range "
                     "of 2^20 - 1",
                     bar, m.tx));
  mbarrier_arrive(bar);
}

// The phase of parity p has completed when the current phase's parity differs from p. A thread
// polling a barrier lands the TMA copies still in flight to it (the latest moment they may land).
bool mbarrier_try_wait_parity(std::uint32_t bar, std::uint32_t parity) {
  detail::Thread& t = detail::thread();
  detail::Block& b = detail::block();
  if (parity > 1) fail(fmt::format("mbarrier.try_wait.parity with parity {}", parity));
  if ((detail::mbarrier_at(b, bar, "mbarrier.try_wait.parity").phase & 1) == parity) detail::land_tma_on(b, bar);
  if ((detail::mbarrier_at(b, bar, "mbarrier.try_wait.parity").phase & 1) != parity) {
    ++t.steps;
    ++stats().mbarrier_waits;
    return true;
  }
  t.waiting = "mbarrier.try_wait.parity";
  t.wait_kind = detail::Wait::mbarrier;
  t.wait_object = bar;
  t.wait_parity = parity;
  detail::yield();  // not progress: a spin on a barrier nothing completes is a deadlock
  t.waiting = nullptr;
  t.wait_kind = detail::Wait::other;
  return false;
}

// The emulator's shared memory is coherent between threads and with its TMA: nothing to order.
void fence_barrier_init() {}

void st_shared(std::uint32_t addr, const void* src, std::size_t bytes) {
  detail::Block& b = detail::block();
  detail::Thread& t = detail::thread();
  std::memcpy(detail::shared_at(addr, bytes, "st.shared", static_cast<std::uint32_t>(bytes)), src, bytes);
  if (b.unfenced_writer.empty()) b.unfenced_writer.assign((b.shared_bytes + 15) / 16, -1);
  const int me = static_cast<int>(&t - b.threads.data());
  for (std::uint32_t c = addr / 16; c <= (addr + static_cast<std::uint32_t>(bytes) - 1) / 16; ++c) {
    b.unfenced_writer[c] = me;
    t.unfenced.push_back(c);
  }
}

void fence_proxy_async() {
  detail::Block& b = detail::block();
  detail::Thread& t = detail::thread();
  const int me = static_cast<int>(&t - b.threads.data());
  for (std::uint32_t c : t.unfenced)
    if (b.unfenced_writer[c] == me) b.unfenced_writer[c] = -1;
  t.unfenced.clear();
}

namespace detail {

void check_async_proxy_read(const Block& b, std::uint32_t addr, std::size_t bytes, const char* what) {
  if (b.unfenced_writer.empty() || bytes == 0) return;
  for (std::uint32_t c = addr / 16; c <= (addr + static_cast<std::uint32_t>(bytes) - 1) / 16; ++c)
    if (c < b.unfenced_writer.size() && b.unfenced_writer[c] >= 0) {
      const uint3 w = b.threads[static_cast<std::size_t>(b.unfenced_writer[c])].idx;
      fail(fmt::format("{} reads shared address {:#x}, which thread ({}, {}, {}) wrote with st.shared and has not "
                       "fenced since (fence.proxy.async.shared::cta, before the barrier that hands it over)",
                       what, 16 * c, w.x, w.y, w.z));
    }
}

}  // namespace detail

}  // namespace llmlab::emu
