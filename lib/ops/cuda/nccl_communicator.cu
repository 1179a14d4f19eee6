// The NCCL backend: fp32 collectives over CUDA device buffers, deterministic like the MPI
// backend (communicator.hpp, "Determinism"). NCCL only moves data: grouped ncclSend/ncclRecv
// for the all-to-all(v) and all-gather-v phases, ncclAllGather, ncclBroadcast. Every sum is
// formed here by a kernel that adds the W contributions of each owned element in rank order.
// ncclAllReduce and ncclReduceScatter are never used: their order of additions depends on
// NCCL's algorithm and topology, so the bits would vary between machines and would differ from
// reduce_scatter followed by all_gather.
//
// Ordering: a collective is enqueued whole when the caller starts it (its NCCL calls, the
// local-sum kernel, copies), on one comm stream created non-blocking so the caller's default
// stream neither waits for it nor is waited on. So collectives complete in issue order and
// every rank makes its NCCL calls in the caller's order, as NCCL requires. Each start first
// makes the comm stream wait on an event recorded on the legacy default stream (the input has
// then been written; see communicator.hpp, "Device buffers"); each op records a done event
// after its last work: test() queries it, wait() polls it against the timeout.
//
// Failure: the NCCL communicator is non-blocking (config.blocking = 0), so no NCCL call can hold
// the host: init, grouped launches and finalize may return ncclInProgress and are polled against
// the timeout with ncclCommGetAsyncError, which also reports network errors while an op runs;
// and ncclCommAbort may be called at any point (NCCL's fault-tolerance rules). A timeout or a
// CUDA or NCCL error fails the communicator: ncclCommAbort (kernels stop waiting on dead peers),
// then Error naming rank, host and the op; abort() ends the job through MPI_Abort. One
// difference from MPI: NCCL connects to a peer on first use (runtime connect), which needs that
// peer to reach the same collective, so the start of a rank's first collectives may wait for
// the slowest rank, bounded by the same timeout.
//
// Host work (f64 sums and max, check_same, barrier, host names, the ncclUniqueId bootstrap) goes
// through an MPI communicator this one owns.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "dist/communicator.hpp"
#include "dist/queued_handle.hpp"

namespace llmlab {
namespace {

// out[i] (+)= s[i] + s[len + i] + ... + s[(W - 1) * len + i], added left to right: rank order,
// the order the MPI backend and comm-check's host reference use. __fadd_rn: one IEEE rounding
// per add, never reassociated (there is no multiply to contract). out never aliases s (scratch).
__global__ void sum_in_rank_order(const float* __restrict__ s, std::int64_t len, int W, float* out, bool accumulate) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < len; i += stride) {
    float acc = s[i];
    for (int q = 1; q < W; ++q) acc = __fadd_rn(acc, s[q * len + i]);
    out[i] = accumulate ? __fadd_rn(out[i], acc) : acc;
  }
}

// The W blocks of a collective: block r has counts[r] elements at displacement displs[r].
struct Blocks {
  std::vector<std::int64_t> counts, displs;
  std::int64_t total = 0;
};

// What this rank exchanges with rank r in one grouped launch.
struct Peer {
  const float* send = nullptr;
  std::int64_t send_count = 0;
  float* recv = nullptr;
  std::int64_t recv_count = 0;
};

// One collective in flight.
struct NcclOp {
  enum class State { running, done, failed };
  explicit NcclOp(std::string w) : what(std::move(w)) {}
  std::string what;
  State state = State::running;
  std::string error;
  cudaEvent_t done_event = nullptr;  // after the op's last work on the comm stream
  // Scratch from the caller's allocator, released once sum_event (after the local sum) completes.
  ScratchAllocator* allocator = nullptr;
  void* scratch = nullptr;
  cudaEvent_t sum_event = nullptr;
};

// nccl-tests style: a failing call becomes an Error naming the call, file:line, rank and host,
// and fails the communicator (comm is the NcclCommunicator).
#define LLMLAB_CUDA_CHECK(comm, call)                                                      \
  do {                                                                                     \
    const cudaError_t llmlab_cuda_rc = (call);                                             \
    if (llmlab_cuda_rc != cudaSuccess) (comm).cuda_failed(llmlab_cuda_rc, #call, __FILE__, __LINE__); \
  } while (0)
#define LLMLAB_NCCL_CHECK(comm, call)                                                        \
  do {                                                                                       \
    const ncclResult_t llmlab_nccl_rc = (call);                                              \
    if (llmlab_nccl_rc != ncclSuccess) (comm).nccl_failed(llmlab_nccl_rc, #call, __FILE__, __LINE__); \
  } while (0)
// A call on the non-blocking communicator: polled until NCCL has finished it (what names it in
// a timeout).
#define LLMLAB_NCCL_SETTLE(comm, call, what) (comm).settle((call), #call, __FILE__, __LINE__, what)

// Elements rank `me` receives from the others in an all-reduce of n: its block of ceil(n / W)
// from each of the W - 1 others, then every block but its own.
std::int64_t all_reduce_received(std::int64_t n, int W, int me) {
  const std::int64_t shard = shard_elements(n, W);
  const std::int64_t mine = std::clamp<std::int64_t>(n - me * shard, 0, shard);
  return (W - 1) * mine + (n - mine);
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(double timeout) : timeout_(timeout) {}
  ~NcclCommunicator() override;
  void init(const LaunchInfo& info);

  const char* backend() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const std::string& host() const override { return host_; }
  std::string host_of(int r) const override { return mpi_->host_of(r); }
  double timeout_seconds() const override { return timeout_; }
  bool failed() const override { return failed_ || (mpi_ && mpi_->failed()); }

  CommHandle all_reduce_sum_async(float* x, std::int64_t n) override;
  CommHandle reduce_scatter_sum_async(const float* in, float* out, std::int64_t shard) override;
  CommHandle all_gather_async(const float* in, float* out, std::int64_t shard) override;
  CommHandle broadcast_async(float* x, std::int64_t n, int root) override;
  CommHandle reduce_scatter_sum_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out,
                                        bool accumulate) override;
  CommHandle all_gather_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out) override;
  std::int64_t traffic_bytes() const override { return traffic_bytes_ + mpi_->traffic_bytes() - mpi_traffic_base_; }
  void set_scratch_allocator(ScratchAllocator* a) override;
  void barrier() override;
  void all_reduce_sum_f64(double* x, std::int64_t n) override {
    on_host([&] { mpi_->all_reduce_sum_f64(x, n); });
  }
  void all_reduce_max_f64(double* x, std::int64_t n) override {
    on_host([&] { mpi_->all_reduce_max_f64(x, n); });
  }
  void check_same(const std::string& what, std::uint64_t hash) override {
    on_host([&] { mpi_->check_same(what, hash); });
  }
  [[noreturn]] void abort(const std::string& message) override;

  // --- used by the check macros and handles ------------------------------------------------
  std::string who() const { return fmt::format("rank {} on {}", rank_, host_); }
  [[noreturn]] void fail(const std::string& message);
  [[noreturn]] void cuda_failed(cudaError_t rc, const char* call, const char* file, int line);
  [[noreturn]] void nccl_failed(ncclResult_t rc, const char* call, const char* file, int line);
  void settle(ncclResult_t rc, const char* call, const char* file, int line, const std::string& what);
  bool running(const NcclOp& op) const { return op.state == NcclOp::State::running; }
  bool test(NcclOp& op);
  void wait(NcclOp& op);

 private:
  std::string select_device();
  void require_healthy() const;
  template <class F>
  void on_host(F f);
  Blocks blocks(const std::vector<std::int64_t>& counts, const char* what) const;
  Blocks shard_blocks(std::int64_t n) const;
  // Collective steps, all on stream_.
  std::shared_ptr<NcclOp> new_op(std::string what);
  float* take_scratch(NcclOp& op, std::int64_t elements);
  void begin(NcclOp& op);
  void exchange(const std::vector<Peer>& peers, const NcclOp& op);
  void copy(float* dst, const float* src, std::int64_t n);
  void local_sum(NcclOp& op, const float* scratch, std::int64_t len, float* out, bool accumulate);
  CommHandle finish(std::shared_ptr<NcclOp> op, std::int64_t received_bytes);
  void poll();
  void drain();
  cudaEvent_t take_event();
  void abort_nccl();
  void free_pool();

  double timeout_;
  std::unique_ptr<Communicator> mpi_;
  int rank_ = 0;
  int world_ = 1;
  int device_ = 0;
  std::string host_ = "unknown-host";
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // recorded on the legacy default stream at each start
  std::vector<cudaEvent_t> events_, free_events_;
  // Device scratch when no allocator is set. Every buffer is back in the pool as soon as its op
  // is enqueued: all its uses are on stream_, so a later op reusing it runs after them.
  std::vector<std::pair<void*, std::size_t>> pool_;
  ScratchAllocator* scratch_allocator_ = nullptr;
  std::deque<std::shared_ptr<NcclOp>> queue_;  // unfinished collectives, oldest first
  bool failed_ = false;
  std::string failure_;
  std::int64_t traffic_bytes_ = 0;
  std::int64_t mpi_traffic_base_ = 0;  // the bootstrap's bytes are not the caller's traffic
};

// --- set-up and tear-down -----------------------------------------------------------------------

// Device, stream and event for this rank; a problem comes back as text so that every rank can
// learn of it before any of them waits on NCCL.
std::string NcclCommunicator::select_device() {
  int count = 0;
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) return fmt::format("no usable CUDA device: cudaGetDeviceCount: {}", cudaGetErrorString(rc));
  if (device_ >= count)
    return fmt::format("local rank {} needs CUDA device {}, but this process sees {} device(s): launch at most {} "
                       "rank(s) per node (NCCL needs one GPU per rank)",
                       device_, device_, count, count);
  if ((rc = cudaSetDevice(device_)) != cudaSuccess ||
      (rc = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)) != cudaSuccess ||
      (rc = cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming)) != cudaSuccess)
    return fmt::format("setting up CUDA device {}: {}", device_, cudaGetErrorString(rc));
  return "";
}

void NcclCommunicator::init(const LaunchInfo& info) {
  mpi_ = make_mpi_communicator(info, timeout_);
  rank_ = mpi_->rank();
  world_ = mpi_->world_size();
  host_ = mpi_->host();
  device_ = info.local_rank;
  const std::string problem = select_device();
  double any_problem = problem.empty() ? 0.0 : 1.0;
  on_host([&] { mpi_->all_reduce_max_f64(&any_problem, 1); });
  if (!problem.empty()) throw Error(fmt::format("{}: {}", who(), problem));
  if (any_problem > 0)
    throw Error(fmt::format("{}: another rank could not set up its CUDA device (its own error says why)", who()));

  int version = 0;
  LLMLAB_NCCL_CHECK(*this, ncclGetVersion(&version));
  on_host([&] { mpi_->check_same(fmt::format("NCCL version (this rank has {})", version), std::uint64_t(version)); });
  // The id travels as floats through the MPI communicator's broadcast: MPI copies the bytes of
  // MPI_FLOAT unchanged between like machines, and no arithmetic touches them.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  static_assert(sizeof(ncclUniqueId) % sizeof(float) == 0);
  float words[sizeof(ncclUniqueId) / sizeof(float)] = {};
  if (rank_ == 0) {
    LLMLAB_NCCL_CHECK(*this, ncclGetUniqueId(&id));
    std::memcpy(words, &id, sizeof(id));
  }
  on_host([&] { mpi_->broadcast(words, std::int64_t(sizeof(words) / sizeof(float)), 0); });
  std::memcpy(&id, words, sizeof(id));

  // Non-blocking, so a rank that never joins ends in our timeout instead of a hang in init.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  LLMLAB_NCCL_SETTLE(*this, ncclCommInitRankConfig(&comm_, world_, id, rank_, &config), "NCCL initialisation");
  mpi_traffic_base_ = mpi_->traffic_bytes();
}

NcclCommunicator::~NcclCommunicator() {
  try {
    if (!failed()) drain();
    if (!failed() && comm_) {
      // Finalize flushes and synchronises with the other ranks: polled like any call.
      LLMLAB_NCCL_SETTLE(*this, ncclCommFinalize(comm_), "NCCL finalize");
      ncclCommDestroy(comm_);
      comm_ = nullptr;
    }
  } catch (...) {  // failed() is true now; handled below
  }
  if (failed()) {
    abort_nccl();
    const std::string why = failed_ ? failure_ : std::string("a host collective failed");
    mpi_->abort(fmt::format("{}: aborting the job after: {}", who(), why));
  }
  free_pool();
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
  if (ready_) cudaEventDestroy(ready_);
  if (stream_) cudaStreamDestroy(stream_);
  // mpi_ goes last: MPI_Finalize.
}

void NcclCommunicator::abort_nccl() {
  if (comm_) ncclCommAbort(comm_);  // stops kernels waiting on dead peers; never blocks on them
  comm_ = nullptr;
}

void NcclCommunicator::abort(const std::string& message) {
  failed_ = true;
  abort_nccl();
  mpi_->abort(message);
  std::_Exit(1);  // the MPI communicator's abort does not return; this only satisfies [[noreturn]]
}

// --- failures -------------------------------------------------------------------------------------

void NcclCommunicator::fail(const std::string& message) {
  failed_ = true;
  failure_ = message;
  for (auto& op : queue_) {
    op->state = NcclOp::State::failed;
    op->error = message;
  }
  queue_.clear();  // their scratch stays out: the device may still write it until the abort lands
  abort_nccl();
  throw Error(message);
}

void NcclCommunicator::cuda_failed(cudaError_t rc, const char* call, const char* file, int line) {
  fail(fmt::format("{}: {} failed at {}:{}: {}", who(), call, file, line, cudaGetErrorString(rc)));
}

void NcclCommunicator::nccl_failed(ncclResult_t rc, const char* call, const char* file, int line) {
  const char* last = comm_ ? ncclGetLastError(comm_) : nullptr;
  fail(fmt::format("{}: {} failed at {}:{}: {}{}", who(), call, file, line, ncclGetErrorString(rc),
                   last && *last ? fmt::format(" ({})", last) : std::string()));
}

void NcclCommunicator::settle(ncclResult_t rc, const char* call, const char* file, int line,
                              const std::string& what) {
  if (rc != ncclSuccess && rc != ncclInProgress) nccl_failed(rc, call, file, line);
  poll_until(
      [&] {
        ncclResult_t state = ncclSuccess;
        const ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
        if (query != ncclSuccess) nccl_failed(query, "ncclCommGetAsyncError", file, line);
        if (state != ncclSuccess && state != ncclInProgress) nccl_failed(state, call, file, line);
        return state == ncclSuccess;
      },
      timeout_, [&] { fail(timed_out_message(who(), what, "", timeout_)); });
}

void NcclCommunicator::require_healthy() const {
  if (failed_) throw Error(fmt::format("{}: communicator failed earlier: {}", who(), failure_));
  if (mpi_->failed()) throw Error(fmt::format("{}: communicator failed earlier (a host collective)", who()));
}

// A host collective over MPI; when it fails the MPI communicator, NCCL is aborted with it.
template <class F>
void NcclCommunicator::on_host(F f) {
  require_healthy();
  try {
    f();
  } catch (const Error&) {
    if (mpi_->failed()) abort_nccl();
    throw;
  }
}

// --- progress -------------------------------------------------------------------------------------

// Retires finished ops, oldest first (they finish in issue order: one stream); returns the
// caller's scratch as soon as an op's local sum is done.
void NcclCommunicator::poll() {
  while (!queue_.empty()) {
    NcclOp& head = *queue_.front();
    if (head.scratch && head.sum_event) {
      const cudaError_t summed = cudaEventQuery(head.sum_event);
      if (summed == cudaSuccess) {
        head.allocator->release(std::exchange(head.scratch, nullptr));
      } else if (summed != cudaErrorNotReady) {
        fail(fmt::format("{}: {} failed on the device: {}", who(), head.what, cudaGetErrorString(summed)));
      }
    }
    const cudaError_t done = cudaEventQuery(head.done_event);
    if (done == cudaErrorNotReady) {
      ncclResult_t state = ncclSuccess;
      LLMLAB_NCCL_CHECK(*this, ncclCommGetAsyncError(comm_, &state));
      if (state != ncclSuccess && state != ncclInProgress)
        fail(fmt::format("{}: {} failed in NCCL: {}", who(), head.what, ncclGetErrorString(state)));
      return;
    }
    if (done != cudaSuccess)
      fail(fmt::format("{}: {} failed on the device: {}", who(), head.what, cudaGetErrorString(done)));
    if (head.scratch) head.allocator->release(std::exchange(head.scratch, nullptr));
    free_events_.push_back(head.done_event);
    if (head.sum_event) free_events_.push_back(head.sum_event);
    head.state = NcclOp::State::done;
    queue_.pop_front();
  }
}

bool NcclCommunicator::test(NcclOp& op) {
  if (op.state == NcclOp::State::failed) throw Error(op.error);
  if (op.state == NcclOp::State::running) poll();
  return op.state == NcclOp::State::done;
}

void NcclCommunicator::wait(NcclOp& op) {
  poll_until([&] { return test(op); }, timeout_, [&] {
    const bool at_head = queue_.empty() || queue_.front().get() == &op;
    fail(timed_out_message(who(), op.what, at_head ? "" : queue_.front()->what, timeout_));
  });
}

// Every collective in flight complete (the newest finishes last).
void NcclCommunicator::drain() {
  if (!queue_.empty()) wait(*std::shared_ptr<NcclOp>(queue_.back()));
}

// --- the steps of a collective ------------------------------------------------------------------

Blocks NcclCommunicator::blocks(const std::vector<std::int64_t>& counts, const char* what) const {
  if (counts.size() != static_cast<std::size_t>(world_))
    throw Error(fmt::format("{}: {}: {} counts for a world of {}", who(), what, counts.size(), world_));
  Blocks b;
  for (std::int64_t n : counts) {
    if (n < 0) throw Error(fmt::format("{}: {}: negative element count {}", who(), what, n));
    b.displs.push_back(b.total);
    b.counts.push_back(n);
    b.total += n;
  }
  return b;
}

// The ZeRO partition of n elements: block r = [r * S, (r + 1) * S) clipped to n, S = ceil(n / W).
Blocks NcclCommunicator::shard_blocks(std::int64_t n) const {
  const std::int64_t shard = shard_elements(n, world_);
  Blocks b;
  for (int r = 0; r < world_; ++r) {
    const std::int64_t begin = std::min<std::int64_t>(n, r * shard);
    b.displs.push_back(begin);
    b.counts.push_back(std::min<std::int64_t>(n, begin + shard) - begin);
  }
  b.total = n;
  return b;
}

std::shared_ptr<NcclOp> NcclCommunicator::new_op(std::string what) {
  require_healthy();
  return std::make_shared<NcclOp>(std::move(what));
}

// Scratch for one op, taken before anything is enqueued (so a refusing allocator leaves the
// communicator healthy). Empty requests take nothing.
float* NcclCommunicator::take_scratch(NcclOp& op, std::int64_t elements) {
  const std::size_t bytes = static_cast<std::size_t>(elements) * sizeof(float);
  if (bytes == 0) return nullptr;
  if (scratch_allocator_) {
    void* p = scratch_allocator_->allocate(bytes);
    if (!p) throw Error(fmt::format("{}: the scratch allocator returned null for {} bytes", who(), bytes));
    op.allocator = scratch_allocator_;
    op.scratch = p;
    return static_cast<float*>(p);
  }
  // Smallest pooled buffer that fits, else a new one (kept until the destructor).
  auto best = pool_.end();
  for (auto it = pool_.begin(); it != pool_.end(); ++it)
    if (it->second >= bytes && (best == pool_.end() || it->second < best->second)) best = it;
  if (best != pool_.end()) return static_cast<float*>(best->first);
  void* p = nullptr;
  LLMLAB_CUDA_CHECK(*this, cudaMalloc(&p, bytes));
  pool_.emplace_back(p, bytes);
  return static_cast<float*>(p);
}

cudaEvent_t NcclCommunicator::take_event() {
  if (!free_events_.empty()) {
    cudaEvent_t e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  LLMLAB_CUDA_CHECK(*this, cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  events_.push_back(e);
  return e;
}

// The comm stream starts after the device work issued so far on the legacy default stream
// (which itself follows every blocking stream): the caller's input is written by then.
void NcclCommunicator::begin(NcclOp& op) {
  op.done_event = take_event();
  LLMLAB_CUDA_CHECK(*this, cudaEventRecord(ready_, cudaStreamLegacy));
  LLMLAB_CUDA_CHECK(*this, cudaStreamWaitEvent(stream_, ready_, 0));
}

// One grouped launch of the transfers with every other rank. An empty transfer is skipped on
// both sides alike (both know every count), and a group with nothing to move is not launched.
// The group is always closed before an error is raised, so NCCL's group state stays sane.
void NcclCommunicator::exchange(const std::vector<Peer>& peers, const NcclOp& op) {
  bool any = false;
  for (int r = 0; r < world_; ++r)
    any = any || (r != rank_ && (peers[r].send_count > 0 || peers[r].recv_count > 0));
  if (!any) return;
  ncclResult_t first = ncclSuccess;
  const char* first_call = "";
  const auto note = [&](ncclResult_t rc, const char* call) {
    if (rc != ncclSuccess && first == ncclSuccess) {
      first = rc;
      first_call = call;
    }
  };
  note(ncclGroupStart(), "ncclGroupStart()");
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    const Peer& p = peers[r];
    if (p.send_count > 0)
      note(ncclSend(p.send, static_cast<std::size_t>(p.send_count), ncclFloat, r, comm_, stream_), "ncclSend");
    if (p.recv_count > 0)
      note(ncclRecv(p.recv, static_cast<std::size_t>(p.recv_count), ncclFloat, r, comm_, stream_), "ncclRecv");
  }
  const ncclResult_t end = ncclGroupEnd();
  if (first != ncclSuccess) nccl_failed(first, first_call, __FILE__, __LINE__);
  settle(end, "ncclGroupEnd()", __FILE__, __LINE__, op.what);
}

void NcclCommunicator::copy(float* dst, const float* src, std::int64_t n) {
  if (n <= 0 || dst == src) return;
  LLMLAB_CUDA_CHECK(*this, cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * sizeof(float),
                                           cudaMemcpyDeviceToDevice, stream_));
}

void NcclCommunicator::local_sum(NcclOp& op, const float* scratch, std::int64_t len, float* out, bool accumulate) {
  if (len == 0) return;
  // 256 threads and at most 2048 blocks (about 15 per SM of an H100): a memory-bound add needs
  // no more, and the grid-stride loop covers any len.
  const std::int64_t blocks = std::min<std::int64_t>((len + 255) / 256, 2048);
  sum_in_rank_order<<<static_cast<unsigned>(blocks), 256, 0, stream_>>>(scratch, len, world_, out, accumulate);
  LLMLAB_CUDA_CHECK(*this, cudaGetLastError());
  if (op.scratch) {
    op.sum_event = take_event();
    LLMLAB_CUDA_CHECK(*this, cudaEventRecord(op.sum_event, stream_));
  }
}

CommHandle NcclCommunicator::finish(std::shared_ptr<NcclOp> op, std::int64_t received_bytes) {
  LLMLAB_CUDA_CHECK(*this, cudaEventRecord(op->done_event, stream_));
  traffic_bytes_ += received_bytes;
  queue_.push_back(op);
  poll();
  return CommHandle(std::make_unique<QueuedHandleOp<NcclCommunicator, NcclOp>>(*this, std::move(op)));
}

void NcclCommunicator::free_pool() {
  for (auto& [p, bytes] : pool_) cudaFree(p);
  pool_.clear();
}

void NcclCommunicator::set_scratch_allocator(ScratchAllocator* a) {
  if (!queue_.empty())
    throw Error(fmt::format("{}: set_scratch_allocator with {} collective(s) in flight (wait for them first)", who(),
                            queue_.size()));
  scratch_allocator_ = a;
  // Pooled buffers would be memory the caller's accounting cannot see.
  if (a) free_pool();
}

// --- collectives ------------------------------------------------------------------------------------

// All-to-all of the W blocks (block r to rank r), the rank-order sum of this rank's block, then
// every rank's summed block to every rank.
CommHandle NcclCommunicator::all_reduce_sum_async(float* x, std::int64_t n) {
  if (n < 0) throw Error(fmt::format("{}: all_reduce: negative element count {}", who(), n));
  if (n == 0) return {};
  auto op = new_op(fmt::format("all_reduce of {} floats", n));
  const Blocks b = shard_blocks(n);
  const std::int64_t mine = b.counts[rank_];
  float* own = x + b.displs[rank_];
  float* s = take_scratch(*op, world_ * mine);
  begin(*op);
  std::vector<Peer> peers(world_);
  for (int r = 0; r < world_; ++r) peers[r] = {x + b.displs[r], b.counts[r], s + r * mine, mine};
  exchange(peers, *op);
  copy(s + rank_ * mine, own, mine);
  local_sum(*op, s, mine, own, false);
  for (int r = 0; r < world_; ++r) peers[r] = {own, mine, x + b.displs[r], b.counts[r]};
  exchange(peers, *op);
  return finish(std::move(op), all_reduce_received(n, world_, rank_) * std::int64_t{sizeof(float)});
}

CommHandle NcclCommunicator::reduce_scatter_sum_async(const float* in, float* out, std::int64_t shard) {
  if (shard < 0) throw Error(fmt::format("{}: reduce_scatter: negative element count {}", who(), shard));
  if (shard == 0) return {};
  auto op = new_op(fmt::format("reduce_scatter of {}x{} floats", world_, shard));
  float* s = take_scratch(*op, world_ * shard);
  begin(*op);
  std::vector<Peer> peers(world_);
  for (int r = 0; r < world_; ++r) peers[r] = {in + r * shard, shard, s + r * shard, shard};
  exchange(peers, *op);
  copy(s + rank_ * shard, in + rank_ * shard, shard);
  local_sum(*op, s, shard, out, false);  // after the sends: out may be in + rank * shard
  return finish(std::move(op), (world_ - 1) * shard * std::int64_t{sizeof(float)});
}

CommHandle NcclCommunicator::reduce_scatter_sum_v_async(const float* in, const std::vector<std::int64_t>& counts,
                                                        float* out, bool accumulate) {
  const Blocks b = blocks(counts, "reduce_scatter_v");
  if (b.total == 0) return {};  // the same on every rank: counts are
  auto op = new_op(fmt::format("reduce_scatter_v of {} floats", b.total));
  const std::int64_t mine = b.counts[rank_];
  float* s = take_scratch(*op, world_ * mine);
  begin(*op);
  std::vector<Peer> peers(world_);
  for (int r = 0; r < world_; ++r) peers[r] = {in + b.displs[r], b.counts[r], s + r * mine, mine};
  exchange(peers, *op);
  copy(s + rank_ * mine, in + b.displs[rank_], mine);
  local_sum(*op, s, mine, out, accumulate);
  return finish(std::move(op), (world_ - 1) * mine * std::int64_t{sizeof(float)});
}

CommHandle NcclCommunicator::all_gather_async(const float* in, float* out, std::int64_t shard) {
  if (shard < 0) throw Error(fmt::format("{}: all_gather: negative element count {}", who(), shard));
  if (shard == 0) return {};
  auto op = new_op(fmt::format("all_gather of {}x{} floats", world_, shard));
  begin(*op);
  // In place when in == out + rank * shard: NCCL recognises that itself.
  LLMLAB_NCCL_SETTLE(*this, ncclAllGather(in, out, static_cast<std::size_t>(shard), ncclFloat, comm_, stream_),
                     op->what);
  return finish(std::move(op), (world_ - 1) * shard * std::int64_t{sizeof(float)});
}

CommHandle NcclCommunicator::all_gather_v_async(const float* in, const std::vector<std::int64_t>& counts,
                                                float* out) {
  const Blocks b = blocks(counts, "all_gather_v");
  if (b.total == 0) return {};
  auto op = new_op(fmt::format("all_gather_v of {} floats", b.total));
  const std::int64_t mine = b.counts[rank_];
  begin(*op);
  std::vector<Peer> peers(world_);
  for (int r = 0; r < world_; ++r) peers[r] = {in, mine, out + b.displs[r], b.counts[r]};
  exchange(peers, *op);
  copy(out + b.displs[rank_], in, mine);  // nothing when in place
  return finish(std::move(op), (b.total - mine) * std::int64_t{sizeof(float)});
}

CommHandle NcclCommunicator::broadcast_async(float* x, std::int64_t n, int root) {
  if (root < 0 || root >= world_)
    throw Error(fmt::format("{}: broadcast root {} outside a world of {}", who(), root, world_));
  if (n < 0) throw Error(fmt::format("{}: broadcast: negative element count {}", who(), n));
  if (n == 0) return {};
  auto op = new_op(fmt::format("broadcast of {} floats from rank {}", n, root));
  begin(*op);
  LLMLAB_NCCL_SETTLE(*this, ncclBroadcast(x, x, static_cast<std::size_t>(n), ncclFloat, root, comm_, stream_),
                     op->what);
  return finish(std::move(op), rank_ == root ? 0 : n * std::int64_t{sizeof(float)});
}

// Every collective issued before it complete on this rank, then an MPI barrier: as with the MPI
// backend, a barrier passed means the earlier collectives are done everywhere.
void NcclCommunicator::barrier() {
  require_healthy();
  drain();
  on_host([&] { mpi_->barrier(); });
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const LaunchInfo& info, double timeout_seconds) {
  if (!(timeout_seconds > 0))
    throw Error(fmt::format("communicator timeout must be positive, got {}", timeout_seconds));
  auto comm = std::make_unique<NcclCommunicator>(timeout_seconds);
  comm->init(info);  // on a throw the destructor finalizes (or aborts the job, after a failure)
  return comm;
}

}  // namespace llmlab
