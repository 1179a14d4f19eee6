// The MPI backend (OpenMPI, host memory). Every collective is issued non-blocking and polled,
// so a rank that died or diverged ends in a timeout error instead of a hang. MPI only moves
// data; sums are added here in rank order (see communicator.hpp, "Determinism").
//
// Ordering: MPI requires every rank to issue collectives on a communicator in the same order.
// A collective's first MPI call is issued when the caller starts it, on start_comm_ (the
// caller's order, the same on every rank). Later phases (the all-gather after an all-reduce's
// local sum) are issued while polling, which happens at different moments on different ranks;
// they go on deferred_comm_, and only the oldest unfinished collective may issue them, so that
// communicator, too, sees the same order everywhere.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "dist/communicator.hpp"
#include "dist/queued_handle.hpp"

namespace llmlab {
namespace {

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<std::uint64_t>() {
  return MPI_UINT64_T;
}
template <>
MPI_Datatype mpi_type<char>() {
  return MPI_CHAR;
}

struct Sum {
  template <class T>
  T operator()(T acc, T v) const {
    return acc + v;
  }
};
struct Max {  // NaN wins, so a NaN gradient norm is never hidden
  template <class T>
  T operator()(T acc, T v) const {
    return (std::isnan(acc) || acc >= v) ? acc : v;
  }
};

class MpiCommunicator;

// The per-rank counts of a _v collective as MPI ints, with their displacements.
struct Blocks {
  std::vector<int> counts, displs;
  int total = 0;
};

// Elements rank `me` receives from the others in an all-reduce of n: its block of
// ceil(n / W) from each of the W - 1 others, then every block but its own.
std::int64_t all_reduce_received(std::int64_t n, int W, int me) {
  const std::int64_t shard = shard_elements(n, W);
  const std::int64_t mine = std::clamp<std::int64_t>(n - me * shard, 0, shard);
  return (W - 1) * mine + (n - mine);
}

// One collective in flight: MPI requests in phases, local work between phases.
class MpiOp {
 public:
  enum class State { running, done, failed };
  explicit MpiOp(std::string what) : what_(std::move(what)) {}
  virtual ~MpiOp() = default;
  // Issue the first phase on start_comm.
  virtual void begin(MpiCommunicator& c) = 0;
  // The current phase completed and this op is the oldest: do local work and either issue the
  // next phase on deferred_comm (return false) or finish (return true).
  virtual bool advance(MpiCommunicator& c) = 0;

  std::string what_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  State state_ = State::running;
  std::string error_;
};

// nccl-tests style: a failing MPI call becomes an Error naming the call, file:line, rank and
// host, and fails the communicator (comm is the MpiCommunicator).
#define LLMLAB_MPI_CHECK(comm, call)                                                               \
  do {                                                                                             \
    const int llmlab_mpi_rc = (call);                                                              \
    if (llmlab_mpi_rc != MPI_SUCCESS) (comm).mpi_failed(llmlab_mpi_rc, #call, __FILE__, __LINE__); \
  } while (0)

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeout) : timeout_(timeout) {}
  ~MpiCommunicator() override;
  void init(const LaunchInfo& info);

  const char* backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const std::string& host() const override { return host_; }
  std::string host_of(int r) const override {
    if (r < 0 || r >= world_) throw Error(fmt::format("{}: host_of({}) outside a world of {}", who(), r, world_));
    return hosts_.empty() ? host_ : hosts_[static_cast<std::size_t>(r)];
  }
  double timeout_seconds() const override { return timeout_; }
  bool failed() const override { return failed_; }

  CommHandle all_reduce_sum_async(float* x, std::int64_t n) override;
  CommHandle reduce_scatter_sum_async(const float* in, float* out, std::int64_t shard) override;
  CommHandle all_gather_async(const float* in, float* out, std::int64_t shard) override;
  CommHandle broadcast_async(float* x, std::int64_t n, int root) override;
  CommHandle reduce_scatter_sum_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out,
                                        bool accumulate) override;
  CommHandle all_gather_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out) override;
  std::int64_t traffic_bytes() const override { return traffic_bytes_; }
  void set_scratch_allocator(ScratchAllocator* a) override;
  void barrier() override;
  void all_reduce_sum_f64(double* x, std::int64_t n) override;
  void all_reduce_max_f64(double* x, std::int64_t n) override;
  void check_same(const std::string& what, std::uint64_t hash) override;
  [[noreturn]] void abort(const std::string& message) override;

  // --- used by ops and handles ------------------------------------------------------------
  std::string who() const { return fmt::format("rank {} on {}", rank_, host_); }
  [[noreturn]] void mpi_failed(int rc, const char* call, const char* file, int line);
  [[noreturn]] void fail(const std::string& message);
  void require_healthy() const;
  // received_bytes: what this op brings from other ranks, counted once it has started.
  CommHandle start(std::shared_ptr<MpiOp> op, std::int64_t received_bytes = 0);
  void progress();
  bool running(const MpiOp& op) const { return op.state_ == MpiOp::State::running; }
  bool test(MpiOp& op);
  void wait(MpiOp& op);
  int count(std::int64_t n, const std::string& what) const;
  Blocks blocks(const std::vector<std::int64_t>& counts, const std::string& what) const;
  // The pool, used when no ScratchAllocator is set: recycled so steady-state steps do not allocate.
  std::vector<std::byte> take_scratch(std::size_t bytes);
  void give_scratch(std::vector<std::byte> buffer);
  ScratchAllocator* scratch_allocator() const { return scratch_allocator_; }

  MPI_Comm start_comm_ = MPI_COMM_NULL;
  MPI_Comm deferred_comm_ = MPI_COMM_NULL;

 private:
  double timeout_;
  int rank_ = 0;
  int world_ = 1;
  std::string host_ = "unknown-host";
  std::vector<std::string> hosts_;
  bool owns_mpi_ = false;
  bool failed_ = false;
  std::string failure_;
  std::deque<std::shared_ptr<MpiOp>> queue_;  // unfinished collectives, oldest first
  std::vector<std::vector<std::byte>> free_scratch_;
  ScratchAllocator* scratch_allocator_ = nullptr;
  std::int64_t traffic_bytes_ = 0;
};

// A typed scratch buffer an op holds while in flight: from the caller's ScratchAllocator when
// one is set, else borrowed from the communicator's pool. Empty buffers take nothing (a rank
// whose block is empty receives nothing).
template <class T>
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  // An op dropped unfinished (after a failure) still returns the caller's memory.
  ~Scratch() {
    if (external_) allocator_->release(external_);
  }
  void take(MpiCommunicator& c, std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes == 0) return;
    allocator_ = c.scratch_allocator();
    if (allocator_) {
      external_ = allocator_->allocate(bytes);
      if (!external_) throw Error(fmt::format("{}: the scratch allocator returned null for {} bytes", c.who(), bytes));
      data_ = static_cast<T*>(external_);
    } else {
      pooled_ = c.take_scratch(bytes);
      data_ = reinterpret_cast<T*>(pooled_.data());
    }
  }
  void give(MpiCommunicator& c) {
    if (external_) allocator_->release(std::exchange(external_, nullptr));
    if (!pooled_.empty()) c.give_scratch(std::move(pooled_));
    data_ = nullptr;
  }
  T* data() const { return data_; }

 private:
  ScratchAllocator* allocator_ = nullptr;
  void* external_ = nullptr;
  std::vector<std::byte> pooled_;
  T* data_ = nullptr;
};

// x[n] = combine over ranks, in place: all-to-all of the W blocks of ceil(n/W), each rank
// combines its block in rank order, all-gather of the blocks.
template <class T, class Combine>
class AllReduceOp final : public MpiOp {
 public:
  AllReduceOp(std::string what, T* x, std::int64_t n) : MpiOp(std::move(what)), x_(x), n_(n) {}
  void begin(MpiCommunicator& c) override {
    const int W = c.world_size(), me = c.rank();
    const std::int64_t shard = shard_elements(n_, W);
    c.count(shard * W, what_);  // displacements are ints too
    counts_.resize(static_cast<std::size_t>(W));
    displs_.resize(static_cast<std::size_t>(W));
    for (int r = 0; r < W; ++r) {
      const std::int64_t begin = std::min<std::int64_t>(n_, r * shard);
      counts_[static_cast<std::size_t>(r)] = static_cast<int>(std::min<std::int64_t>(n_, begin + shard) - begin);
      displs_[static_cast<std::size_t>(r)] = static_cast<int>(begin);
    }
    len_ = counts_[static_cast<std::size_t>(me)];
    recv_counts_.assign(static_cast<std::size_t>(W), len_);
    recv_displs_.resize(static_cast<std::size_t>(W));
    for (int q = 0; q < W; ++q) recv_displs_[static_cast<std::size_t>(q)] = q * len_;
    scratch_.take(c, static_cast<std::size_t>(W) * static_cast<std::size_t>(len_));
    LLMLAB_MPI_CHECK(
        c, MPI_Ialltoallv(x_, counts_.data(), displs_.data(), mpi_type<T>(), scratch_.data(), recv_counts_.data(),
                          recv_displs_.data(), mpi_type<T>(), c.start_comm_, &request_));
  }
  bool advance(MpiCommunicator& c) override {
    if (gathered_) return true;
    const int W = c.world_size();
    const T* s = scratch_.data();
    T* mine = x_ + displs_[static_cast<std::size_t>(c.rank())];
    const Combine combine;
    for (int i = 0; i < len_; ++i) {
      T acc = s[i];
      for (int q = 1; q < W; ++q)
        acc =
            combine(acc, s[static_cast<std::size_t>(q) * static_cast<std::size_t>(len_) + static_cast<std::size_t>(i)]);
      mine[i] = acc;
    }
    scratch_.give(c);
    LLMLAB_MPI_CHECK(c, MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x_, counts_.data(), displs_.data(),
                                        mpi_type<T>(), c.deferred_comm_, &request_));
    gathered_ = true;
    return false;
  }

 private:
  T* x_;
  std::int64_t n_;
  int len_ = 0;
  bool gathered_ = false;
  std::vector<int> counts_, displs_, recv_counts_, recv_displs_;
  Scratch<T> scratch_;
};

// out[shard] = sum over ranks of block `rank` of in[W * shard].
class ReduceScatterOp final : public MpiOp {
 public:
  ReduceScatterOp(std::string what, const float* in, float* out, std::int64_t shard)
      : MpiOp(std::move(what)), in_(in), out_(out), shard_(shard) {}
  void begin(MpiCommunicator& c) override {
    const int count = c.count(shard_, what_);
    scratch_.take(c, static_cast<std::size_t>(c.world_size()) * static_cast<std::size_t>(shard_));
    LLMLAB_MPI_CHECK(c,
                     MPI_Ialltoall(in_, count, MPI_FLOAT, scratch_.data(), count, MPI_FLOAT, c.start_comm_, &request_));
  }
  bool advance(MpiCommunicator& c) override {
    const std::size_t W = static_cast<std::size_t>(c.world_size()), shard = static_cast<std::size_t>(shard_);
    const float* s = scratch_.data();
    for (std::size_t i = 0; i < shard; ++i) {
      float acc = s[i];
      for (std::size_t q = 1; q < W; ++q) acc += s[q * shard + i];
      out_[i] = acc;
    }
    scratch_.give(c);
    return true;
  }

 private:
  const float* in_;
  float* out_;
  std::int64_t shard_;
  Scratch<float> scratch_;
};

// out[counts[me]] (+)= sum over ranks of block `me` of in: all-to-all of the uneven blocks,
// then the same rank-order sum as ReduceScatterOp.
class ReduceScatterVOp final : public MpiOp {
 public:
  ReduceScatterVOp(std::string what, const float* in, Blocks blocks, float* out, bool accumulate)
      : MpiOp(std::move(what)), in_(in), out_(out), accumulate_(accumulate), send_(std::move(blocks)) {}
  void begin(MpiCommunicator& c) override {
    const std::size_t W = static_cast<std::size_t>(c.world_size());
    len_ = send_.counts[static_cast<std::size_t>(c.rank())];
    recv_counts_.assign(W, len_);
    recv_displs_.resize(W);
    for (std::size_t q = 0; q < W; ++q) recv_displs_[q] = static_cast<int>(q) * len_;
    scratch_.take(c, W * static_cast<std::size_t>(len_));
    LLMLAB_MPI_CHECK(c, MPI_Ialltoallv(in_, send_.counts.data(), send_.displs.data(), MPI_FLOAT, scratch_.data(),
                                       recv_counts_.data(), recv_displs_.data(), MPI_FLOAT, c.start_comm_, &request_));
  }
  bool advance(MpiCommunicator& c) override {
    const std::size_t W = static_cast<std::size_t>(c.world_size()), len = static_cast<std::size_t>(len_);
    const float* s = scratch_.data();
    for (std::size_t i = 0; i < len; ++i) {
      float acc = s[i];
      for (std::size_t q = 1; q < W; ++q) acc += s[q * len + i];
      out_[i] = accumulate_ ? out_[i] + acc : acc;
    }
    scratch_.give(c);
    return true;
  }

 private:
  const float* in_;
  float* out_;
  bool accumulate_;
  int len_ = 0;
  Blocks send_;  // MPI reads the count arrays until the request completes
  std::vector<int> recv_counts_, recv_displs_;
  Scratch<float> scratch_;
};

class AllGatherVOp final : public MpiOp {
 public:
  AllGatherVOp(std::string what, const float* in, Blocks blocks, float* out)
      : MpiOp(std::move(what)), in_(in), out_(out), recv_(std::move(blocks)) {}
  void begin(MpiCommunicator& c) override {
    const std::size_t me = static_cast<std::size_t>(c.rank());
    const void* send = in_ == out_ + recv_.displs[me] ? MPI_IN_PLACE : static_cast<const void*>(in_);
    LLMLAB_MPI_CHECK(c, MPI_Iallgatherv(send, recv_.counts[me], MPI_FLOAT, out_, recv_.counts.data(),
                                        recv_.displs.data(), MPI_FLOAT, c.start_comm_, &request_));
  }
  bool advance(MpiCommunicator&) override { return true; }

 private:
  const float* in_;
  float* out_;
  Blocks recv_;
};

template <class T>
class AllGatherOp final : public MpiOp {
 public:
  AllGatherOp(std::string what, const T* in, T* out, std::int64_t shard)
      : MpiOp(std::move(what)), in_(in), out_(out), shard_(shard) {}
  void begin(MpiCommunicator& c) override {
    const int count = c.count(shard_, what_);
    const T* own = out_ + static_cast<std::int64_t>(c.rank()) * shard_;
    const void* send = in_ == own ? MPI_IN_PLACE : static_cast<const void*>(in_);
    LLMLAB_MPI_CHECK(c,
                     MPI_Iallgather(send, count, mpi_type<T>(), out_, count, mpi_type<T>(), c.start_comm_, &request_));
  }
  bool advance(MpiCommunicator&) override { return true; }

 private:
  const T* in_;
  T* out_;
  std::int64_t shard_;
};

class BroadcastOp final : public MpiOp {
 public:
  BroadcastOp(std::string what, float* x, std::int64_t n, int root)
      : MpiOp(std::move(what)), x_(x), n_(n), root_(root) {}
  void begin(MpiCommunicator& c) override {
    const int count = c.count(n_, what_);
    LLMLAB_MPI_CHECK(c, MPI_Ibcast(x_, count, MPI_FLOAT, root_, c.start_comm_, &request_));
  }
  bool advance(MpiCommunicator&) override { return true; }

 private:
  float* x_;
  std::int64_t n_;
  int root_;
};

class BarrierOp final : public MpiOp {
 public:
  BarrierOp() : MpiOp("barrier") {}
  void begin(MpiCommunicator& c) override { LLMLAB_MPI_CHECK(c, MPI_Ibarrier(c.start_comm_, &request_)); }
  bool advance(MpiCommunicator&) override { return true; }
};

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

// "0,2-3,5"
std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += j == i ? fmt::format("{}", ranks[i]) : fmt::format("{}-{}", ranks[i], ranks[j]);
    i = j + 1;
  }
  return out;
}

// --- MpiCommunicator --------------------------------------------------------------------------

void MpiCommunicator::init(const LaunchInfo& info) {
  int finalized = 0, initialized = 0;
  MPI_Finalized(&finalized);
  if (finalized) throw Error("MPI was already finalized in this process: create one MPI communicator per process");
  MPI_Initialized(&initialized);
  host_ = this_host();
  if (!initialized) {
    int provided = 0;
    // Only the calling thread uses MPI (OpenMP threads compute, never communicate).
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw Error(fmt::format("{} ({}): MPI_Init_thread failed", host_, describe(info)));
    owns_mpi_ = true;
  }
  // Errors come back as codes and become Errors naming the call, rank and host.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  LLMLAB_MPI_CHECK(*this, MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  LLMLAB_MPI_CHECK(*this, MPI_Comm_size(MPI_COMM_WORLD, &world_));
  if (world_ != info.world_size || rank_ != info.rank)
    throw Error(fmt::format(
        "{}: MPI joined a world of {} as rank {}, but the launch environment says {}; under Slurm, srun needs "
        "--mpi=pmix for OpenMPI to see the job (or launch with mpirun)",
        who(), world_, rank_, describe(info)));
  LLMLAB_MPI_CHECK(*this, MPI_Comm_dup(MPI_COMM_WORLD, &start_comm_));
  LLMLAB_MPI_CHECK(*this, MPI_Comm_set_errhandler(start_comm_, MPI_ERRORS_RETURN));
  LLMLAB_MPI_CHECK(*this, MPI_Comm_dup(MPI_COMM_WORLD, &deferred_comm_));
  LLMLAB_MPI_CHECK(*this, MPI_Comm_set_errhandler(deferred_comm_, MPI_ERRORS_RETURN));

  constexpr std::int64_t kHost = 256;
  std::vector<char> mine(kHost, '\0'), all(static_cast<std::size_t>(kHost * world_), '\0');
  std::memcpy(mine.data(), host_.data(), std::min<std::size_t>(host_.size(), kHost - 1));
  start(std::make_shared<AllGatherOp<char>>("exchange of host names", mine.data(), all.data(), kHost)).wait();
  for (int r = 0; r < world_; ++r) hosts_.emplace_back(all.data() + r * kHost);
}

MpiCommunicator::~MpiCommunicator() {
  if (!failed_) {
    try {
      while (!queue_.empty()) wait(*queue_.back());
    } catch (...) {  // failed_ is set now; handled below
    }
  }
  if (failed_) {
    std::fprintf(stderr, "%s: aborting the MPI job after: %s\n", who().c_str(), failure_.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (start_comm_ != MPI_COMM_NULL) MPI_Comm_free(&start_comm_);
  if (deferred_comm_ != MPI_COMM_NULL) MPI_Comm_free(&deferred_comm_);
  if (owns_mpi_) {
    // Unwinding an error that every rank raised alike (check_same, a bad recipe): finalize only at
    // exit, once the tool has printed it. MPI_Finalize waits for every rank, so no rank exits
    // before all have printed; finalizing here instead, the first rank to exit non-zero would
    // make mpirun kill the others before they print theirs.
    if (std::uncaught_exceptions() > 0)
      std::atexit([] { MPI_Finalize(); });
    else
      MPI_Finalize();
  }
}

void MpiCommunicator::mpi_failed(int rc, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) std::snprintf(text, sizeof(text), "MPI error %d", rc);
  fail(fmt::format("{}: {} failed at {}:{}: {}", who(), call, file, line, text));
}

void MpiCommunicator::fail(const std::string& message) {
  failed_ = true;
  failure_ = message;
  for (auto& op : queue_) {
    op->state_ = MpiOp::State::failed;
    op->error_ = message;
  }
  queue_.clear();  // requests left pending: the job is aborted next, MPI cannot cancel collectives
  throw Error(message);
}

void MpiCommunicator::require_healthy() const {
  if (failed_) throw Error(fmt::format("{}: communicator failed earlier: {}", who(), failure_));
}

int MpiCommunicator::count(std::int64_t n, const std::string& what) const {
  if (n < 0) throw Error(fmt::format("{}: {}: negative element count", who(), what));
  if (n > INT_MAX)
    throw Error(fmt::format("{}: {} exceeds MPI's int counts ({} elements per call): split it into buckets", who(),
                            what, INT_MAX));
  return static_cast<int>(n);
}

Blocks MpiCommunicator::blocks(const std::vector<std::int64_t>& counts, const std::string& what) const {
  if (counts.size() != static_cast<std::size_t>(world_))
    throw Error(fmt::format("{}: {}: {} counts for a world of {}", who(), what, counts.size(), world_));
  Blocks b;
  std::int64_t total = 0;
  for (std::int64_t n : counts) {
    if (n < 0) throw Error(fmt::format("{}: {}: negative element count {}", who(), what, n));
    b.displs.push_back(static_cast<int>(total));
    b.counts.push_back(static_cast<int>(n));
    total += n;
    count(total, what);  // the total and every displacement are MPI ints; checked as they grow
  }
  b.total = static_cast<int>(total);
  return b;
}

void MpiCommunicator::set_scratch_allocator(ScratchAllocator* a) {
  if (!queue_.empty())
    throw Error(fmt::format("{}: set_scratch_allocator with {} collective(s) in flight (wait for them first)", who(),
                            queue_.size()));
  scratch_allocator_ = a;
  // Pooled buffers would be memory the caller's accounting cannot see.
  if (a) free_scratch_ = {};
}

std::vector<std::byte> MpiCommunicator::take_scratch(std::size_t bytes) {
  auto it = std::find_if(free_scratch_.begin(), free_scratch_.end(),
                         [&](const std::vector<std::byte>& b) { return b.size() >= bytes; });
  if (it == free_scratch_.end()) {
    std::vector<std::byte> fresh(bytes);
    return fresh;
  }
  std::vector<std::byte> out = std::move(*it);
  free_scratch_.erase(it);
  return out;
}

void MpiCommunicator::give_scratch(std::vector<std::byte> buffer) {
  if (!buffer.empty()) free_scratch_.push_back(std::move(buffer));
}

CommHandle MpiCommunicator::start(std::shared_ptr<MpiOp> op, std::int64_t received_bytes) {
  require_healthy();
  op->begin(*this);
  traffic_bytes_ += received_bytes;
  queue_.push_back(op);
  progress();
  return CommHandle(std::make_unique<QueuedHandleOp<MpiCommunicator, MpiOp>>(*this, std::move(op)));
}

void MpiCommunicator::progress() {
  while (!queue_.empty()) {
    MpiOp& head = *queue_.front();
    int complete = 0;
    LLMLAB_MPI_CHECK(*this, MPI_Test(&head.request_, &complete, MPI_STATUS_IGNORE));
    if (!complete) return;
    if (!head.advance(*this)) continue;  // next phase issued: test it right away
    head.state_ = MpiOp::State::done;
    queue_.pop_front();
  }
}

bool MpiCommunicator::test(MpiOp& op) {
  if (op.state_ == MpiOp::State::failed) throw Error(op.error_);
  if (op.state_ == MpiOp::State::running) progress();
  return op.state_ == MpiOp::State::done;
}

void MpiCommunicator::wait(MpiOp& op) {
  poll_until([&] { return test(op); }, timeout_, [&] {
    const bool at_head = queue_.empty() || queue_.front().get() == &op;
    fail(timed_out_message(who(), op.what_, at_head ? "" : queue_.front()->what_, timeout_));
  });
}

CommHandle MpiCommunicator::all_reduce_sum_async(float* x, std::int64_t n) {
  if (n == 0) return {};
  return start(std::make_shared<AllReduceOp<float, Sum>>(fmt::format("all_reduce of {} floats", n), x, n),
               all_reduce_received(n, world_, rank_) * std::int64_t{sizeof(float)});
}

CommHandle MpiCommunicator::reduce_scatter_sum_async(const float* in, float* out, std::int64_t shard) {
  if (shard == 0) return {};
  return start(
      std::make_shared<ReduceScatterOp>(fmt::format("reduce_scatter of {}x{} floats", world_, shard), in, out, shard),
      (world_ - 1) * shard * std::int64_t{sizeof(float)});
}

CommHandle MpiCommunicator::all_gather_async(const float* in, float* out, std::int64_t shard) {
  if (shard == 0) return {};
  return start(
      std::make_shared<AllGatherOp<float>>(fmt::format("all_gather of {}x{} floats", world_, shard), in, out, shard),
      (world_ - 1) * shard * std::int64_t{sizeof(float)});
}

CommHandle MpiCommunicator::broadcast_async(float* x, std::int64_t n, int root) {
  if (root < 0 || root >= world_)
    throw Error(fmt::format("{}: broadcast root {} outside a world of {}", who(), root, world_));
  if (n == 0) return {};
  return start(std::make_shared<BroadcastOp>(fmt::format("broadcast of {} floats from rank {}", n, root), x, n, root),
               rank_ == root ? 0 : n * std::int64_t{sizeof(float)});
}

CommHandle MpiCommunicator::reduce_scatter_sum_v_async(const float* in, const std::vector<std::int64_t>& counts,
                                                       float* out, bool accumulate) {
  Blocks b = blocks(counts, "reduce_scatter_v");
  if (b.total == 0) return {};  // the same on every rank: counts are
  // Rank r receives W blocks of counts[r]; every rank checks every rank's, so all refuse together.
  for (std::int64_t n : counts) count(n * world_, "reduce_scatter_v's receive buffer");
  const std::int64_t mine = counts[static_cast<std::size_t>(rank_)];
  std::string what = fmt::format("reduce_scatter_v of {} floats", b.total);
  return start(std::make_shared<ReduceScatterVOp>(std::move(what), in, std::move(b), out, accumulate),
               (world_ - 1) * mine * std::int64_t{sizeof(float)});
}

CommHandle MpiCommunicator::all_gather_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out) {
  Blocks b = blocks(counts, "all_gather_v");
  if (b.total == 0) return {};
  const std::int64_t others = b.total - counts[static_cast<std::size_t>(rank_)];
  std::string what = fmt::format("all_gather_v of {} floats", b.total);
  return start(std::make_shared<AllGatherVOp>(std::move(what), in, std::move(b), out),
               others * std::int64_t{sizeof(float)});
}

void MpiCommunicator::barrier() { start(std::make_shared<BarrierOp>()).wait(); }

void MpiCommunicator::all_reduce_sum_f64(double* x, std::int64_t n) {
  if (n == 0) return;
  start(std::make_shared<AllReduceOp<double, Sum>>(fmt::format("all_reduce of {} doubles", n), x, n),
        all_reduce_received(n, world_, rank_) * std::int64_t{sizeof(double)})
      .wait();
}

void MpiCommunicator::all_reduce_max_f64(double* x, std::int64_t n) {
  if (n == 0) return;
  start(std::make_shared<AllReduceOp<double, Max>>(fmt::format("all_reduce max of {} doubles", n), x, n),
        all_reduce_received(n, world_, rank_) * std::int64_t{sizeof(double)})
      .wait();
}

void MpiCommunicator::check_same(const std::string& what, std::uint64_t hash) {
  std::vector<std::uint64_t> all(static_cast<std::size_t>(world_));
  start(std::make_shared<AllGatherOp<std::uint64_t>>(fmt::format("check_same({})", what), &hash, all.data(), 1)).wait();
  if (std::all_of(all.begin(), all.end(), [&](std::uint64_t h) { return h == all[0]; })) return;
  // Groups of ranks by hash, largest first (the odd ones out come last), at most 8 listed.
  std::vector<std::pair<std::uint64_t, std::vector<int>>> groups;
  for (int r = 0; r < world_; ++r) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](auto& g) { return g.first == all[static_cast<std::size_t>(r)]; });
    if (it == groups.end())
      groups.push_back({all[static_cast<std::size_t>(r)], {r}});
    else
      it->second.push_back(r);
  }
  std::stable_sort(groups.begin(), groups.end(), [](auto& a, auto& b) { return a.second.size() > b.second.size(); });
  std::string detail;
  for (std::size_t g = 0; g < groups.size() && g < 8; ++g) {
    std::vector<std::string> hosts;
    for (int r : groups[g].second)
      if (std::find(hosts.begin(), hosts.end(), hosts_[static_cast<std::size_t>(r)]) == hosts.end())
        hosts.push_back(hosts_[static_cast<std::size_t>(r)]);
    const bool one = groups[g].second.size() == 1;
    detail += fmt::format("{}{} {} on {} {} {:016x}", g ? "; " : "", one ? "rank" : "ranks",
                          rank_list(groups[g].second), fmt::join(hosts, ","), one ? "has" : "have", groups[g].first);
  }
  if (groups.size() > 8) detail += fmt::format("; and {} more groups", groups.size() - 8);
  throw Error(fmt::format("{}: {} differs across ranks: {}", who(), what, detail));
}

void MpiCommunicator::abort(const std::string& message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  failed_ = true;
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);  // MPI_Abort does not return; this only satisfies [[noreturn]]
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const LaunchInfo& info, double timeout_seconds) {
  auto comm = std::make_unique<MpiCommunicator>(timeout_seconds);
  comm->init(info);  // on a throw the destructor finalizes (or aborts, after a timeout)
  return comm;
}

}  // namespace llmlab
