// comm-check: every collective of the communicator checked against expected values on every
// rank (sizes 1, 7, 2^20 and shards that do not divide), asynchronous overlap, bitwise
// determinism across ranks, and the failure paths: a recipe-hash mismatch, a rank that dies
// and a rank that stalls must end every rank with an error, never a hang.
// Usage: mpirun -np N comm-check [--timeout S] [--die-rank R] [--stall-rank R] [--mismatch-rank R]
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "dist/communicator.hpp"

using namespace llmlab;

namespace {

Communicator* g_comm = nullptr;
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

void check_all_reduce(Communicator& c, Gen gen, std::int64_t n) {
  const int W = c.world_size(), me = c.rank();
  std::vector<float> x(static_cast<std::size_t>(n)), want(x.size());
  for (std::int64_t i = 0; i < n; ++i) {
    x[static_cast<std::size_t>(i)] = gen(me, i);
    want[static_cast<std::size_t>(i)] = rank_order_sum(gen, W, i);
  }
  c.all_reduce_sum(x.data(), n);
  CHECK_BITS(fmt::format("all_reduce n={}", n), x.data(), want);
  c.check_same(fmt::format("all_reduce bits n={}", n), hash_bits(x.data(), x.size()));
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
  c.reduce_scatter_sum(grads.data(), out, shard);
  const std::string tag = fmt::format("n={} shard={}{}", n, shard, in_place ? " in place" : "");
  CHECK_BITS("reduce_scatter " + tag, out, want_shard);
  std::vector<float> gathered(padded, -1.0f);
  float* dst = in_place ? grads.data() : gathered.data();
  c.all_gather(out, dst, shard);
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
  c.broadcast(x.data(), n, root);
  CHECK_BITS(fmt::format("broadcast n={} root={}", n, root), x.data(), want);
}

void check_scalars(Communicator& c) {
  const int W = c.world_size(), me = c.rank();
  double sums[2] = {me + 0.25, -1.0 * me};
  c.all_reduce_sum_f64(sums, 2);
  double want0 = 0, want1 = 0;
  for (int r = 0; r < W; ++r) want0 += r + 0.25, want1 += -1.0 * r;
  COMM_CHECK(sums[0] == want0);
  COMM_CHECK(sums[1] == want1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double maxes[3] = {static_cast<double>(me), -static_cast<double>(me), me == W - 1 ? nan : 1.0};
  c.all_reduce_max_f64(maxes, 3);
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

struct Options {
  double timeout = 30;
  int die_rank = -1;
  int stall_rank = -1;
  int mismatch_rank = -1;
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
      else if (arg == "--mismatch-rank")
        o.mismatch_rank = std::stoi(value);
      else
        throw InputError(fmt::format("unknown option {}", arg));
    } catch (const std::logic_error&) {
      throw InputError(fmt::format("{} {}: not a number", arg, value));
    }
  }
  return o;
}

void run(Communicator& c, const Options& o) {
  const int W = c.world_size(), me = c.rank();
  if (me == o.die_rank) {
    std::fprintf(stderr, "comm-check: rank %d exits now (--die-rank)\n", me);
    std::_Exit(3);
  }
  if (me == o.stall_rank) {  // diverged: never reaches the next collective in time
    std::fprintf(stderr, "comm-check: rank %d stalls (--stall-rank)\n", me);
    std::this_thread::sleep_for(std::chrono::duration<double>(3 * o.timeout + 5));
    std::_Exit(3);
  }
  // The start-up check every tool makes: same resolved recipe on every rank.
  c.check_same("recipe hash", me == o.mismatch_rank ? 0xbadc0ffeeull : 0x5eed5eedull);

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
        "comm-check: %s world %d on %s: %.0f checks, %.0f failures; all_reduce checks %.3f s, "
        "all_reduce of 2^20 floats %.2f ms\n",
        c.backend(), W, c.host().c_str(), totals[0], totals[1], t_reduce, t_big * 1e3);
  if (totals[1] > 0) throw Error(fmt::format("{:.0f} check(s) failed across ranks", totals[1]));
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<Communicator> comm;
  try {
    const Options options = parse(argc, argv);
    const LaunchInfo launch = detect_launch();
    comm = make_communicator(launch, options.timeout);
    g_comm = comm.get();
    if (comm->rank() == 0)
      std::printf("comm-check: %s, backend %s, timeout %g s\n", describe(launch).c_str(), comm->backend(),
                  options.timeout);
    std::fflush(stdout);
    run(*comm, options);
    return 0;
  } catch (const Error& e) {
    const std::string line = fmt::format("comm-check: error: {}", e.what());
    // After a timeout or MPI failure the other ranks may be stuck: end the whole job.
    if (comm && comm->failed()) comm->abort(line);
    std::fprintf(stderr, "%s\n", line.c_str());
    return static_cast<int>(e.code());
  }
}
