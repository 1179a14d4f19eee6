// comm-check: every collective of the communicator checked against expected values on every
// rank (sizes 1, 7, 2^20 and shards that do not divide; uneven _v blocks of ZeRO sub-ranges),
// asynchronous overlap, bitwise determinism across ranks, traffic counts, the scratch
// allocator hook, and the failure paths: a recipe-hash mismatch, a rank that dies and a rank
// that stalls must end every rank with an error, never a hang.
// --device cuda: the same checks over GPU buffers (device_mirror.hpp copies each collective's
// host buffers to the device and back): the NCCL backend across ranks, the single backend with
// device copies alone, or NCCL at any world size with --backend nccl. Without a GPU, CUDA or
// NCCL it prints "SKIP: why" and exits 0.
// Usage: mpirun -np N comm-check [--timeout S] [--die-rank R] [--stall-rank R] [--mismatch-rank R]
//                                [--stall-at check_same|all_reduce] [--device cpu|cuda]
//                                [--backend auto|nccl]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "dist/communicator.hpp"
#ifdef LLMLAB_HAVE_CUDA
#include "device_mirror.hpp"
#include "ops/cuda/device_memory.hpp"
#endif

using namespace llmlab;

namespace {

Communicator* g_comm = nullptr;
bool g_device = false;  // --device cuda: scratch from a caller's allocator is device memory
int g_checks = 0;
int g_failures = 0;

void report(const std::string& what, const char* file, int line) {
  ++g_failures;
  std::fprintf(stderr, "comm-check: FAIL rank %d on %s at %s:%d: %s\n", g_comm->rank(), g_comm->host().c_str(), file,
               line, what.c_str());
}

// nccl-tests style: the failing expression, file:line, rank and host.
#define COMM_CHECK(cond)                            \
  do {                                              \
    ++g_checks;                                     \
    if (!(cond)) report(#cond, __FILE__, __LINE__); \
  } while (0)

// Bitwise comparison of n values; names the buffer and the first mismatches.
template <class T>
void check_bits(const std::string& name, const T* got, const std::vector<T>& want, const char* file, int line) {
  ++g_checks;
  int shown = 0, bad = 0;
  std::string detail;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(T)) == 0) continue;
    ++bad;
    if (shown++ < 3) detail += fmt::format(" [{}] got {} want {}", i, got[i], want[i]);
  }
  if (bad) report(fmt::format("{}: {} of {} values differ:{}", name, bad, want.size(), detail), file, line);
}
#define CHECK_BITS(name, got, want) check_bits(name, got, want, __FILE__, __LINE__)

// Small multiples of 0.5: every sum over a few ranks is exact, whatever the order.
float exact_value(int r, std::int64_t i) { return static_cast<float>((i * 7 + r * 13) % 101 - 50) * 0.5f; }

// Full-mantissa values in [-1, 1): sums depend on the order, so equal bits prove equal order.
float random_value(int r, std::int64_t i) {
  std::uint64_t z = static_cast<std::uint64_t>(r) * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(i) + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(static_cast<double>(z >> 40) / static_cast<double>(1ull << 24) * 2.0 - 1.0);
}

using Gen = float (*)(int, std::int64_t);

// The sum of every rank's values in rank order 0..W-1, as the communicator promises.
float rank_order_sum(Gen gen, int world, std::int64_t i) {
  float acc = gen(0, i);
  for (int r = 1; r < world; ++r) acc += gen(r, i);
  return acc;
}

std::uint64_t hash_bits(const float* x, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  const auto* bytes = reinterpret_cast<const unsigned char*>(x);
  for (std::size_t i = 0; i < n * sizeof(float); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  return h;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

bool is_mpi(Communicator& c) { return std::string(c.backend()) == "mpi"; }
// Backends that take reduction scratch (from a caller's allocator when one is set).
bool has_scratch(Communicator& c) { return is_mpi(c) || std::string(c.backend()) == "nccl"; }

// Elements of an all-reduce of n that rank me holds and sums: its block of the ZeRO partition.
std::int64_t own_block(std::int64_t n, int W, int me) {
  const std::int64_t shard = shard_elements(n, W);
  return std::clamp<std::int64_t>(n - me * shard, 0, shard);
}

// traffic_bytes() grows by exactly what each collective receives from the other ranks.
class Traffic {
 public:
  explicit Traffic(Communicator& c) : c_(c), last_(c.traffic_bytes()) {}
  void expect(std::int64_t bytes, const std::string& what, const char* file, int line) {
    ++g_checks;
    const std::int64_t now = c_.traffic_bytes();
    if (now - last_ != bytes)
      report(fmt::format("traffic of {}: {} bytes, want {}", what, now - last_, bytes), file, line);
    last_ = now;
  }
  // An all-reduce of n elements of elem bytes: my block from each other rank, then the others' blocks.
  static std::int64_t all_reduce(Communicator& c, std::int64_t n, std::int64_t elem) {
    const std::int64_t mine = own_block(n, c.world_size(), c.rank());
    return ((c.world_size() - 1) * mine + n - mine) * elem;
  }

 private:
  Communicator& c_;
  std::int64_t last_;
};
#define CHECK_TRAFFIC(t, bytes, what) (t).expect(bytes, what, __FILE__, __LINE__)

void check_all_reduce(Communicator& c, Gen gen, std::int64_t n) {
  const int W = c.world_size(), me = c.rank();
  std::vector<float> x(static_cast<std::size_t>(n)), want(x.size());
  for (std::int64_t i = 0; i < n; ++i) {
    x[static_cast<std::size_t>(i)] = gen(me, i);
    want[static_cast<std::size_t>(i)] = rank_order_sum(gen, W, i);
  }
  Traffic t(c);
  c.all_reduce_sum(x.data(), n);
  CHECK_TRAFFIC(t, Traffic::all_reduce(c, n, 4), fmt::format("all_reduce n={}", n));
  CHECK_BITS(fmt::format("all_reduce n={}", n), x.data(), want);
  c.check_same(fmt::format("all_reduce bits n={}", n), hash_bits(x.data(), x.size()));
  CHECK_TRAFFIC(t, 0, "check_same");
}

// ZeRO layout: a padded [W * shard] buffer; reduce-scatter then all-gather equals all-reduce.
void check_shards(Communicator& c, Gen gen, std::int64_t n, bool in_place) {
  const int W = c.world_size(), me = c.rank();
  const std::int64_t shard = shard_elements(n, W);
  const auto padded = static_cast<std::size_t>(W * shard);
  std::vector<float> grads(padded, 0.0f), want_full(padded, 0.0f);
  for (std::int64_t i = 0; i < n; ++i) {
    grads[static_cast<std::size_t>(i)] = gen(me, i);
    want_full[static_cast<std::size_t>(i)] = rank_order_sum(gen, W, i);
  }
  const std::vector<float> want_shard(want_full.begin() + me * shard, want_full.begin() + (me + 1) * shard);
  std::vector<float> own(static_cast<std::size_t>(shard));
  float* out = in_place ? grads.data() + me * shard : own.data();
  Traffic t(c);
  c.reduce_scatter_sum(grads.data(), out, shard);
  const std::string tag = fmt::format("n={} shard={}{}", n, shard, in_place ? " in place" : "");
  CHECK_TRAFFIC(t, (W - 1) * shard * 4, "reduce_scatter " + tag);
  CHECK_BITS("reduce_scatter " + tag, out, want_shard);
  std::vector<float> gathered(padded, -1.0f);
  float* dst = in_place ? grads.data() : gathered.data();
  c.all_gather(out, dst, shard);
  CHECK_TRAFFIC(t, (W - 1) * shard * 4, "all_gather " + tag);
  CHECK_BITS("reduce_scatter + all_gather " + tag, dst, want_full);
  // all_gather of distinct per-rank shards.
  std::vector<float> mine(static_cast<std::size_t>(shard)), want_gather(padded), all(padded);
  for (std::int64_t i = 0; i < shard; ++i) mine[static_cast<std::size_t>(i)] = gen(me, i);
  for (int r = 0; r < W; ++r)
    for (std::int64_t i = 0; i < shard; ++i) want_gather[static_cast<std::size_t>(r * shard + i)] = gen(r, i);
  c.all_gather(mine.data(), all.data(), shard);
  CHECK_BITS("all_gather " + tag, all.data(), want_gather);
}

void check_broadcast(Communicator& c, std::int64_t n, int root) {
  std::vector<float> x(static_cast<std::size_t>(n)), want(x.size());
  for (std::int64_t i = 0; i < n; ++i) {
    x[static_cast<std::size_t>(i)] = random_value(c.rank(), i);
    want[static_cast<std::size_t>(i)] = random_value(root, i);
  }
  Traffic t(c);
  c.broadcast(x.data(), n, root);
  CHECK_TRAFFIC(t, c.rank() == root ? 0 : n * 4, fmt::format("broadcast n={} root={}", n, root));
  CHECK_BITS(fmt::format("broadcast n={} root={}", n, root), x.data(), want);
}

void check_scalars(Communicator& c) {
  const int W = c.world_size(), me = c.rank();
  double sums[2] = {me + 0.25, -1.0 * me};
  Traffic t(c);
  c.all_reduce_sum_f64(sums, 2);
  CHECK_TRAFFIC(t, Traffic::all_reduce(c, 2, 8), "all_reduce_sum_f64 n=2");
  double want0 = 0, want1 = 0;
  for (int r = 0; r < W; ++r) want0 += r + 0.25, want1 += -1.0 * r;
  COMM_CHECK(sums[0] == want0);
  COMM_CHECK(sums[1] == want1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double maxes[3] = {static_cast<double>(me), -static_cast<double>(me), me == W - 1 ? nan : 1.0};
  c.all_reduce_max_f64(maxes, 3);
  CHECK_TRAFFIC(t, Traffic::all_reduce(c, 3, 8), "all_reduce_max_f64 n=3");
  COMM_CHECK(maxes[0] == W - 1);
  COMM_CHECK(maxes[1] == 0);
  COMM_CHECK(std::isnan(maxes[2]));  // NaN never hidden
}

// Start collectives, compute, wait (out of order): results as if blocking.
void check_overlap(Communicator& c) {
  const int W = c.world_size(), me = c.rank();
  const std::int64_t n = 1 << 20, shard = shard_elements(n, W);
  std::vector<float> a(static_cast<std::size_t>(n)), want_a(a.size());
  for (std::int64_t i = 0; i < n; ++i) {
    a[static_cast<std::size_t>(i)] = random_value(me, i);
    want_a[static_cast<std::size_t>(i)] = rank_order_sum(random_value, W, i);
  }
  std::vector<float> mine(static_cast<std::size_t>(shard), static_cast<float>(me)),
      all(static_cast<std::size_t>(W * shard));
  std::vector<float> want_all(all.size());
  for (int r = 0; r < W; ++r)
    for (std::int64_t i = 0; i < shard; ++i) want_all[static_cast<std::size_t>(r * shard + i)] = static_cast<float>(r);
  float small[7];
  for (int i = 0; i < 7; ++i) small[i] = exact_value(me, i);
  std::vector<float> want_small(7);
  for (int i = 0; i < 7; ++i) want_small[static_cast<std::size_t>(i)] = rank_order_sum(exact_value, W, i);

  const auto t0 = std::chrono::steady_clock::now();
  CommHandle h1 = c.all_reduce_sum_async(a.data(), n);
  CommHandle h2 = c.all_gather_async(mine.data(), all.data(), shard);
  CommHandle h3 = c.all_reduce_sum_async(small, 7);
  // "Backward": 20 chunks of compute, driving communication between them.
  double work = 0;
  for (int chunk = 0; chunk < 20; ++chunk) {
    for (int i = 0; i < 200000; ++i) work += std::sqrt(static_cast<double>(i + chunk));
    h1.test();
  }
  h3.wait();
  h2.wait();
  h1.wait();
  const double elapsed = seconds_since(t0);
  COMM_CHECK(work > 0);
  CHECK_BITS("async all_reduce n=2^20", a.data(), want_a);
  CHECK_BITS("async all_gather", all.data(), want_all);
  CHECK_BITS("async all_reduce n=7", small, want_small);
  if (me == 0) std::printf("comm-check: overlap (3 collectives + compute) %.3f s\n", elapsed);
}

// --- variable-count collectives ---------------------------------------------------------------

// Blocks of the ZeRO sub-range [a, b) of a flat buffer of n: block r is [a, b) intersected with
// shard r, so the blocks concatenate to [a, b); some are empty whenever [a, b) misses a shard.
std::vector<std::int64_t> range_counts(std::int64_t n, int W, std::int64_t a, std::int64_t b) {
  const std::int64_t shard = shard_elements(n, W);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(W));
  for (int r = 0; r < W; ++r)
    counts[static_cast<std::size_t>(r)] =
        std::max<std::int64_t>(0, std::min(b, (r + 1) * shard) - std::max(a, r * shard));
  return counts;
}

std::int64_t displacement(const std::vector<std::int64_t>& counts, int r) {
  return std::accumulate(counts.begin(), counts.begin() + r, std::int64_t{0});
}

// Rank r's values at flat positions [a, a + len): every rank can regenerate every other's.
std::vector<float> flat_values(int r, std::int64_t a, std::int64_t len) {
  std::vector<float> v(static_cast<std::size_t>(len));
  for (std::int64_t i = 0; i < len; ++i) v[static_cast<std::size_t>(i)] = random_value(r, a + i);
  return v;
}

// The rank-order sums of positions [a, a + len).
std::vector<float> flat_sums(int W, std::int64_t a, std::int64_t len) {
  std::vector<float> v(static_cast<std::size_t>(len));
  for (std::int64_t i = 0; i < len; ++i) v[static_cast<std::size_t>(i)] = rank_order_sum(random_value, W, a + i);
  return v;
}

std::vector<float> slice(const std::vector<float>& v, std::int64_t at, std::int64_t len) {
  return {v.begin() + at, v.begin() + at + len};
}

// reduce_scatter_v (out of place, accumulating, in place) and all_gather_v (out of place, in
// place) of the sub-range [a, b): rank-order sums, the bits all_reduce gives, traffic per op.
void check_v(Communicator& c, std::int64_t n, std::int64_t a, std::int64_t b) {
  const int W = c.world_size(), me = c.rank();
  const auto counts = range_counts(n, W, a, b);
  const std::int64_t len = b - a, mine = counts[static_cast<std::size_t>(me)], at = displacement(counts, me);
  const std::string tag = fmt::format("n={} [{}, {}) block {}+{}", n, a, b, at, mine);
  const std::vector<float> in = flat_values(me, a, len), want_all = flat_sums(W, a, len);
  const std::vector<float> want = slice(want_all, at, mine);
  Traffic t(c);

  std::vector<float> out(static_cast<std::size_t>(mine), -7.0f);
  c.reduce_scatter_sum_v(in.data(), counts, out.data(), false);
  CHECK_TRAFFIC(t, (W - 1) * mine * 4, "reduce_scatter_v " + tag);
  CHECK_BITS("reduce_scatter_v " + tag, out.data(), want);

  std::vector<float> acc(static_cast<std::size_t>(mine)), want_acc(acc.size());
  for (std::size_t i = 0; i < acc.size(); ++i) {
    acc[i] = random_value(me + 100, static_cast<std::int64_t>(i));
    want_acc[i] = acc[i] + want[i];  // the rank-order sum first, then added once
  }
  c.reduce_scatter_sum_v(in.data(), counts, acc.data(), true);
  CHECK_TRAFFIC(t, (W - 1) * mine * 4, "reduce_scatter_v accumulate " + tag);
  CHECK_BITS("reduce_scatter_v accumulate " + tag, acc.data(), want_acc);

  std::vector<float> x = in;
  c.reduce_scatter_sum_v(x.data(), counts, x.data() + at, false);
  CHECK_TRAFFIC(t, (W - 1) * mine * 4, "reduce_scatter_v in place " + tag);
  CHECK_BITS("reduce_scatter_v in place " + tag, x.data() + at, want);

  std::vector<float> reduced = in;
  c.all_reduce_sum(reduced.data(), len);
  CHECK_BITS("all_reduce bits vs reduce_scatter_v " + tag, reduced.data() + at, out);
  CHECK_TRAFFIC(t, Traffic::all_reduce(c, len, 4), "all_reduce " + tag);

  std::vector<float> gathered(static_cast<std::size_t>(len), -7.0f);
  c.all_gather_v(out.data(), counts, gathered.data());
  CHECK_TRAFFIC(t, (len - mine) * 4, "all_gather_v " + tag);
  CHECK_BITS("all_gather_v " + tag, gathered.data(), want_all);
  c.all_gather_v(x.data() + at, counts, x.data());
  CHECK_TRAFFIC(t, (len - mine) * 4, "all_gather_v in place " + tag);
  CHECK_BITS("all_gather_v in place " + tag, x.data(), want_all);
}

// Sub-ranges of several kinds for n not divisible by W, then seeded random ones (the same
// seed on every rank, so every rank issues the same collectives).
void check_v_ranges(Communicator& c) {
  const int W = c.world_size();
  std::uint64_t seed = 12345;
  const auto next = [&](std::int64_t bound) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::int64_t>((seed >> 33) % static_cast<std::uint64_t>(bound + 1));
  };
  for (std::int64_t n : {1, 7, 1001, 100003}) {
    const std::int64_t s = shard_elements(n, W);
    const std::int64_t ranges[][2] = {
        {0, n}, {0, 0}, {n, n}, {s, s}, {0, 1}, {n - 1, n}, {s + 1, s + 3}, {(W - 1) * s, n}, {s / 2, n - s / 2}};
    for (const auto& r : ranges) {
      const std::int64_t a = std::clamp<std::int64_t>(r[0], 0, n);
      check_v(c, n, a, std::clamp<std::int64_t>(r[1], a, n));
    }
    for (int k = 0; k < 6; ++k) {
      const std::int64_t a = next(n), b = next(n);
      check_v(c, n, std::min(a, b), std::max(a, b));
    }
  }
}

// Four collectives in flight, driven between chunks of compute, waited in another order.
void check_v_overlap(Communicator& c) {
  const int W = c.world_size(), me = c.rank();
  const std::int64_t n = 300007, s = shard_elements(n, W), a2 = s / 3, b2 = n - 5;
  const auto c1 = range_counts(n, W, 0, n), c2 = range_counts(n, W, a2, b2);
  const std::int64_t m1 = c1[static_cast<std::size_t>(me)], m2 = c2[static_cast<std::size_t>(me)];
  const std::int64_t at1 = displacement(c1, me), at2 = displacement(c2, me);
  const std::vector<float> in1 = flat_values(me, 0, n), in2 = flat_values(me, a2, b2 - a2);
  std::vector<float> out1(static_cast<std::size_t>(m1)), out2(static_cast<std::size_t>(m2), 1.0f);
  std::vector<float> x = flat_values(me, 0, 1000);
  // all_gather_v of each rank's own values at its block of [a2, b2).
  const std::vector<float> mine = flat_values(me, a2 + at2, m2);
  std::vector<float> gathered(static_cast<std::size_t>(b2 - a2)), want_gathered(gathered.size());
  for (int r = 0; r < W; ++r) {
    const std::int64_t at = displacement(c2, r);
    const auto v = flat_values(r, a2 + at, c2[static_cast<std::size_t>(r)]);
    std::copy(v.begin(), v.end(), want_gathered.begin() + at);
  }
  std::vector<float> want2 = slice(flat_sums(W, a2, b2 - a2), at2, m2);
  for (float& v : want2) v = 1.0f + v;

  Traffic t(c);
  CommHandle h1 = c.reduce_scatter_sum_v_async(in1.data(), c1, out1.data(), false);
  CommHandle h2 = c.all_reduce_sum_async(x.data(), 1000);
  CommHandle h3 = c.reduce_scatter_sum_v_async(in2.data(), c2, out2.data(), true);
  CommHandle h4 = c.all_gather_v_async(mine.data(), c2, gathered.data());
  CHECK_TRAFFIC(t, ((W - 1) * (m1 + m2) + (b2 - a2 - m2)) * 4 + Traffic::all_reduce(c, 1000, 4), "v overlap");
  double work = 0;
  for (int chunk = 0; chunk < 10; ++chunk) {
    for (int i = 0; i < 100000; ++i) work += std::sqrt(static_cast<double>(i + chunk));
    h3.test();
  }
  h4.wait();
  h2.wait();
  h3.wait();
  h1.wait();
  COMM_CHECK(work > 0);
  CHECK_BITS("async reduce_scatter_v [0, n)", out1.data(), slice(flat_sums(W, 0, n), at1, m1));
  CHECK_BITS("async all_reduce n=1000", x.data(), flat_sums(W, 0, 1000));
  CHECK_BITS("async reduce_scatter_v accumulate", out2.data(), want2);
  CHECK_BITS("async all_gather_v", gathered.data(), want_gathered);
}

template <class F>
bool throws(F f) {
  try {
    f();
  } catch (const Error&) {
    return true;
  }
  return false;
}

// Bad counts throw on every rank before any communication; the communicator stays healthy.
void check_v_errors(Communicator& c) {
  const int W = c.world_size();
  float x[4] = {};
  Traffic t(c);
  std::vector<std::int64_t> wrong_size(static_cast<std::size_t>(W) + 1, 1), negative(static_cast<std::size_t>(W), 1);
  negative.back() = -1;
  COMM_CHECK(throws([&] { c.all_gather_v(x, wrong_size, x); }));
  COMM_CHECK(throws([&] { c.reduce_scatter_sum_v(x, wrong_size, x, false); }));
  COMM_CHECK(throws([&] { c.all_gather_v(x, negative, x); }));
  COMM_CHECK(throws([&] { c.reduce_scatter_sum_v(x, negative, x, true); }));
  if (is_mpi(c)) {  // counts past MPI's ints: checked before any buffer is touched
    std::vector<std::int64_t> huge(static_cast<std::size_t>(W), INT_MAX / W + 1);
    COMM_CHECK(throws([&] { c.all_gather_v(nullptr, huge, nullptr); }));
    COMM_CHECK(throws([&] { c.reduce_scatter_sum_v(nullptr, huge, nullptr, false); }));
    // The total fits, but rank 0 would receive W blocks past MPI's ints: every rank refuses.
    std::vector<std::int64_t> lopsided(static_cast<std::size_t>(W), 0);
    lopsided[0] = INT_MAX / W + 1;
    COMM_CHECK(throws([&] { c.reduce_scatter_sum_v(nullptr, lopsided, nullptr, false); }));
  }
  CHECK_TRAFFIC(t, 0, "rejected counts");
  COMM_CHECK(!c.failed());
}

// Counts every allocation; held maps what is out to its size, so each release must match one.
// With --device cuda it hands out device memory, freed at the end (cudaFree would wait for the
// collectives in flight).
class CountingAllocator final : public ScratchAllocator {
 public:
  CountingAllocator() = default;
  CountingAllocator(const CountingAllocator&) = delete;
  CountingAllocator& operator=(const CountingAllocator&) = delete;
  ~CountingAllocator() override {
#ifdef LLMLAB_HAVE_CUDA
    for (void* p : released) device_free(p);
#endif
  }
  void* allocate(std::size_t bytes) override {
#ifdef LLMLAB_HAVE_CUDA
    void* p = g_device ? device_alloc(bytes) : std::malloc(bytes);
#else
    void* p = std::malloc(bytes);
#endif
    held[p] = bytes;
    peak = std::max(peak, live += bytes);
    ++allocations;
    return p;
  }
  void release(void* p) override {
    const auto it = held.find(p);
    if (it == held.end()) return void(++unknown);
    live -= it->second;
    held.erase(it);
    if (g_device)
      released.push_back(p);
    else
      std::free(p);
  }
  std::map<void*, std::size_t> held;
  std::vector<void*> released;
  std::size_t live = 0, peak = 0;
  int allocations = 0, unknown = 0;
};

// With an allocator set, every scratch buffer comes from it, is back after wait(), and its
// size is what communicator.hpp documents (none for the single backend; NCCL's f64 sums take
// host scratch of their own, over MPI).
void check_scratch_allocator(Communicator& c) {
  const int W = c.world_size(), me = c.rank();
  const std::size_t scale = has_scratch(c) ? 1 : 0;
  CountingAllocator alloc;
  c.set_scratch_allocator(&alloc);
  // want: the documented bytes, when this backend takes that scratch from the allocator.
  const auto expect_peak = [&](std::size_t want, const std::string& what, int line) {
    ++g_checks;
    if (alloc.peak != want || alloc.live != 0)
      report(fmt::format("scratch of {}: peak {} live {}, want peak {}", what, alloc.peak, alloc.live, want), __FILE__,
             line);
    alloc.peak = 0;
  };
  const std::int64_t n = 1003;
  const auto counts = range_counts(n, W, 5, 900);
  const std::int64_t mine = counts[static_cast<std::size_t>(me)];
  std::vector<float> in = flat_values(me, 5, 895), out(static_cast<std::size_t>(mine));
  c.reduce_scatter_sum_v(in.data(), counts, out.data(), false);
  expect_peak(static_cast<std::size_t>(W * mine) * 4 * scale, "reduce_scatter_v", __LINE__);
  CHECK_BITS("reduce_scatter_v, caller's scratch", out.data(),
             slice(flat_sums(W, 5, 895), displacement(counts, me), mine));
  std::vector<float> x = flat_values(me, 0, n);
  c.all_reduce_sum(x.data(), n);
  expect_peak(static_cast<std::size_t>(W * own_block(n, W, me)) * 4 * scale, "all_reduce", __LINE__);
  CHECK_BITS("all_reduce, caller's scratch", x.data(), flat_sums(W, 0, n));
  const std::int64_t shard = shard_elements(n, W);
  std::vector<float> padded(static_cast<std::size_t>(W * shard), 1.0f), own(static_cast<std::size_t>(shard));
  c.reduce_scatter_sum(padded.data(), own.data(), shard);
  expect_peak(static_cast<std::size_t>(W * shard) * 4 * scale, "reduce_scatter", __LINE__);
  double scalars[3] = {1, 2, 3};
  c.all_reduce_sum_f64(scalars, 3);
  // NCCL: host sums over its MPI communicator, which keeps its own small host pool.
  expect_peak(is_mpi(c) ? static_cast<std::size_t>(W * own_block(3, W, me)) * 8 : 0, "all_reduce_sum_f64", __LINE__);
  std::vector<float> gathered(895);
  c.all_gather_v(out.data(), counts, gathered.data());
  c.all_gather(own.data(), padded.data(), shard);
  c.broadcast(x.data(), n, 0);
  c.barrier();
  expect_peak(0, "all_gather(_v), broadcast, barrier", __LINE__);
  // Two in flight: at most both at once.
  CommHandle h1 = c.reduce_scatter_sum_v_async(in.data(), counts, out.data(), false);
  CommHandle h2 = c.all_reduce_sum_async(x.data(), n);
  h2.wait();
  h1.wait();
  const std::size_t a = static_cast<std::size_t>(W * mine) * 4 * scale,
                    b = static_cast<std::size_t>(W * own_block(n, W, me)) * 4 * scale;
  COMM_CHECK(alloc.live == 0 && alloc.peak >= std::max(a, b) && alloc.peak <= a + b);
  // Changing the allocator with a collective in flight throws (only checkable while in flight).
  std::vector<float> big(1 << 18, 1.0f);
  CommHandle h3 = c.all_reduce_sum_async(big.data(), 1 << 18);
  if (has_scratch(c) && !h3.test()) COMM_CHECK(throws([&] { c.set_scratch_allocator(nullptr); }));
  h3.wait();
  c.set_scratch_allocator(nullptr);
  COMM_CHECK(alloc.held.empty() && alloc.unknown == 0 && alloc.live == 0);
  COMM_CHECK(!has_scratch(c) || alloc.allocations > 0);
  const int allocations = alloc.allocations;
  c.all_reduce_sum(x.data(), n);  // the pool again
  COMM_CHECK(alloc.allocations == allocations);
}

struct Options {
  double timeout = 30;
  int die_rank = -1;
  int stall_rank = -1;
  std::string stall_at = "check_same";  // check_same (a host collective) | all_reduce (an fp32 one)
  int mismatch_rank = -1;
  std::string device = "cpu";    // cpu | cuda
  std::string backend = "auto";  // auto (the launch factory) | nccl (NCCL even for one rank)
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) throw InputError(fmt::format("{} needs a value", arg));
    const std::string value = argv[++i];
    try {
      if (arg == "--timeout")
        o.timeout = std::stod(value);
      else if (arg == "--die-rank")
        o.die_rank = std::stoi(value);
      else if (arg == "--stall-rank")
        o.stall_rank = std::stoi(value);
      else if (arg == "--stall-at" && (value == "check_same" || value == "all_reduce"))
        o.stall_at = value;
      else if (arg == "--mismatch-rank")
        o.mismatch_rank = std::stoi(value);
      else if (arg == "--device" && (value == "cpu" || value == "cuda"))
        o.device = value;
      else if (arg == "--backend" && (value == "auto" || value == "nccl"))
        o.backend = value;
      else if (arg == "--device" || arg == "--backend" || arg == "--stall-at")
        throw InputError(fmt::format("{} {}: expected {}", arg, value,
                                     arg == "--device"    ? "cpu or cuda"
                                     : arg == "--backend" ? "auto or nccl"
                                                          : "check_same or all_reduce"));
      else
        throw InputError(fmt::format("unknown option {}", arg));
    } catch (const std::logic_error&) {
      throw InputError(fmt::format("{} {}: not a number", arg, value));
    }
  }
  return o;
}

// Diverged: never reaches the next collective in time.
void stall(const Options& o, int me) {
  std::fprintf(stderr, "comm-check: rank %d stalls (--stall-rank)\n", me);
  std::this_thread::sleep_for(std::chrono::duration<double>(3 * o.timeout + 5));
  std::_Exit(3);
}

void run(Communicator& c, const Options& o) {
  const int W = c.world_size(), me = c.rank();
  if (me == o.die_rank) {
    std::fprintf(stderr, "comm-check: rank %d exits now (--die-rank)\n", me);
    std::_Exit(3);
  }
  if (me == o.stall_rank && o.stall_at == "check_same") stall(o, me);
  // The start-up check every tool makes: same resolved recipe on every rank.
  c.check_same("recipe hash", me == o.mismatch_rank ? 0xbadc0ffeeull : 0x5eed5eedull);
  if (me == o.stall_rank) stall(o, me);  // --stall-at all_reduce: the others wait in the first one

  const auto t0 = std::chrono::steady_clock::now();
  for (std::int64_t n : {1, 7, 1000003, 1 << 20}) check_all_reduce(c, exact_value, n);
  for (std::int64_t n : {1, 7, 1000003, 1 << 20}) check_all_reduce(c, random_value, n);
  const double t_reduce = seconds_since(t0);
  for (std::int64_t n : {1, 7, 1 << 20})
    for (bool in_place : {false, true}) check_shards(c, random_value, n, in_place);
  for (std::int64_t n : {1, 7, 1 << 20})
    for (int root : {0, W - 1}) check_broadcast(c, n, root);
  check_scalars(c);
  check_overlap(c);
  check_v_ranges(c);
  check_v_overlap(c);
  check_v_errors(c);
  check_scratch_allocator(c);
  c.barrier();

  // Timing of one 4 MiB all-reduce (not a benchmark: oversubscribed CI cores).
  std::vector<float> x(1 << 20, 1.0f);
  c.barrier();
  const auto t1 = std::chrono::steady_clock::now();
  for (int rep = 0; rep < 5; ++rep) c.all_reduce_sum(x.data(), 1 << 20);
  const double t_big = seconds_since(t1) / 5;
  COMM_CHECK(x[12345] == std::pow(static_cast<float>(W), 5.0f));

  double totals[2] = {static_cast<double>(g_checks), static_cast<double>(g_failures)};
  c.all_reduce_sum_f64(totals, 2);
  if (me == 0)
    std::printf(
        "comm-check: %s%s world %d on %s: %.0f checks, %.0f failures; all_reduce checks %.3f s, "
        "all_reduce of 2^20 floats %.2f ms\n",
        c.backend(), g_device ? " (device buffers)" : "", W, c.host().c_str(), totals[0], totals[1], t_reduce,
        t_big * 1e3);
  if (totals[1] > 0) throw Error(fmt::format("{:.0f} check(s) failed across ranks", totals[1]));
}

// Why --device cuda cannot run here ("" when it can): checked before any communicator exists,
// so every rank of the job skips alike.
std::string device_skip(const Options& o, const LaunchInfo& launch) {
#ifndef LLMLAB_HAVE_CUDA
  (void)o;
  (void)launch;
  return "this build has no CUDA (configure with -DLLMLAB_CUDA=ON)";
#else
  if (cuda_device_count() == 0) return "no CUDA device";
#ifndef LLMLAB_HAVE_NCCL
  if (launch.world_size > 1 || o.backend == "nccl") return "this build has no NCCL (nccl.h and libnccl beside CUDA)";
#else
  (void)o;
  (void)launch;
#endif
  return "";
#endif
}

std::unique_ptr<Communicator> make(const Options& o, const LaunchInfo& launch) {
  if (o.backend == "nccl") {
#ifdef LLMLAB_HAVE_NCCL
    return make_nccl_communicator(launch, o.timeout);
#else
    throw Error("--backend nccl: this build has no NCCL");
#endif
  }
  return make_communicator(launch, o.timeout, o.device == "cuda");
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<Communicator> comm, mirror;
  try {
    const Options options = parse(argc, argv);
    if (options.backend == "nccl" && options.device != "cuda") throw InputError("--backend nccl needs --device cuda");
    const LaunchInfo launch = detect_launch();
    if (options.device == "cuda") {
      const std::string skip = device_skip(options, launch);
      if (!skip.empty()) {
        if (launch.rank == 0) std::printf("SKIP: %s (comm-check --device cuda)\n", skip.c_str());
        return 0;
      }
    }
    comm = make(options, launch);
    g_comm = comm.get();
#ifdef LLMLAB_HAVE_CUDA
    if (options.device == "cuda") {
      g_device = true;
      mirror = std::make_unique<DeviceMirror>(*comm);
      g_comm = mirror.get();
    }
#endif
    if (comm->rank() == 0)
      std::printf("comm-check: %s, backend %s, %s buffers, timeout %g s\n", describe(launch).c_str(), comm->backend(),
                  g_device ? "device" : "host", options.timeout);
    std::fflush(stdout);
    run(*g_comm, options);
    mirror.reset();  // its device buffers go before the communicator
    return 0;
  } catch (const Error& e) {
    const std::string line = fmt::format("comm-check: error: {}", e.what());
    // After a timeout or MPI failure the other ranks may be stuck: end the whole job.
    if (comm && comm->failed()) comm->abort(line);
    std::fprintf(stderr, "%s\n", line.c_str());
    return static_cast<int>(e.code());
  }
}
