// The communicator ranks use to exchange fp32 buffers: all-reduce, reduce-scatter,
// all-gather, broadcast, barrier, each blocking or asynchronous (a CommHandle to wait on, so
// communication overlaps compute), plus the start-up checks and failure handling of a
// distributed run. Backends: single process (copies and no-ops), MPI (OpenMPI, CPU host
// memory) and NCCL (CUDA device memory; host scalars and start-up checks over MPI).
//
// Contract, as for MPI: every rank issues the same collectives in the same order with the same
// sizes. Pointers are the op backend's device pointers (host memory for the CPU backend).
//
// Device buffers (NCCL, and the single backend made with device_buffers): the fp32 pointers are
// CUDA device memory; the f64 sums and check_same stay on the host. A collective reads its input
// after the device work issued before it on the legacy default stream and on every blocking
// stream (the per-thread default stream included): the backend orders its own stream after an
// event recorded there when the collective starts. Work on a stream created with
// cudaStreamNonBlocking is not covered: synchronise it before starting the collective. Outputs
// are final once wait() returns or test() returns true.
//
// Determinism: sums are computed by this library, not by MPI's reduction algorithms. Data
// move with all-to-all / all-gather (exact copies); each rank adds the contributions for the
// elements it owns in rank order 0, 1, ..., W-1. So every rank gets the same bits, the bits do
// not depend on timing or MPI's algorithm choice, and all_reduce_sum equals reduce_scatter_sum
// followed by all_gather bit for bit (ZeRO stage 0 and stages 1-3 see the same gradients).
//
// ZeRO layout: a flat buffer of n elements is split into W shards of shard_elements(n, W) =
// ceil(n / W) elements, rank r owning [r * shard, (r + 1) * shard); the tail of the last
// shard(s) is padding the caller allocates (and zeroes) in buffers of W * shard elements. A
// sub-range [a, b) of that buffer meets the shards unevenly: the _v collectives take one count
// per rank (block r = [a, b) intersected with shard r), so the blocks concatenate to [a, b).
//
// Failures: a collective not complete within the timeout, an MPI, NCCL or CUDA error or a
// mismatch in check_same throws Error naming rank and host. After a timeout or such an error
// the communicator is failed(): later calls throw, and the app should call abort() (MPI_Abort:
// every rank of the job ends, none hangs); a failed communicator destroyed without abort()
// aborts then.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/launch.hpp"

namespace llmlab {

// ceil(n / world): elements per rank when a flat buffer of n elements is sharded.
inline std::int64_t shard_elements(std::int64_t n, int world) { return (n + world - 1) / world; }

// An asynchronous collective in flight. The output buffers (and the input, for all-gather and
// reduce-scatter) must stay untouched until wait() returns or test() returns true. A handle
// must not outlive its communicator; destroying an unfinished handle waits for it (errors are
// then left to the communicator's failed() state). Default-constructed: already complete.
class CommHandle {
 public:
  class Op {
   public:
    virtual ~Op() = default;
    virtual bool test() = 0;  // drives progress; true once complete
    virtual void wait() = 0;  // until complete; throws Error on failure or timeout
  };

  CommHandle() = default;
  explicit CommHandle(std::unique_ptr<Op> op) : op_(std::move(op)) {}

  // Drive progress without blocking (MPI progresses non-blocking collectives only inside MPI
  // calls: calling test() between chunks of compute keeps large transfers moving).
  bool test() { return !op_ || op_->test(); }
  void wait() {
    if (op_) op_->wait();
    op_.reset();
  }

 private:
  std::unique_ptr<Op> op_;
};

// Where a backend's communication scratch comes from, so a caller can count it in its own
// memory accounting: host memory for MPI, device memory for NCCL (the caller's device
// allocator). allocate returns memory aligned for double; release gets back exactly the
// pointers allocate returned. The communicator does not pool in this mode (the allocator may).
class ScratchAllocator {
 public:
  virtual ~ScratchAllocator() = default;
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* p) = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual const char* backend() const = 0;  // "single" | "mpi" | "nccl"
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const std::string& host() const = 0;  // this rank's host name
  virtual std::string host_of(int rank) const = 0;
  virtual double timeout_seconds() const = 0;
  virtual bool failed() const = 0;  // a collective timed out or MPI failed: abort() next

  // --- asynchronous fp32 collectives --------------------------------------------------------
  // x[n] = sum over ranks of x[n], in place.
  virtual CommHandle all_reduce_sum_async(float* x, std::int64_t n) = 0;
  // out[shard] = sum over ranks r of in[rank * shard + i]; in is [world * shard]. out may be
  // in + rank * shard.
  virtual CommHandle reduce_scatter_sum_async(const float* in, float* out, std::int64_t shard) = 0;
  // out[r * shard + i] = in[i] of rank r; out is [world * shard]. in may be out + rank * shard.
  virtual CommHandle all_gather_async(const float* in, float* out, std::int64_t shard) = 0;
  // x[n] = x[n] of rank root.
  virtual CommHandle broadcast_async(float* x, std::int64_t n, int root) = 0;

  // --- blocking forms -------------------------------------------------------------------
  void all_reduce_sum(float* x, std::int64_t n) { all_reduce_sum_async(x, n).wait(); }
  void reduce_scatter_sum(const float* in, float* out, std::int64_t shard) {
    reduce_scatter_sum_async(in, out, shard).wait();
  }
  void all_gather(const float* in, float* out, std::int64_t shard) { all_gather_async(in, out, shard).wait(); }
  void broadcast(float* x, std::int64_t n, int root) { broadcast_async(x, n, root).wait(); }
  virtual void barrier() = 0;

  // --- variable-count fp32 collectives (ZeRO sub-ranges) --------------------------------------
  // counts[r] >= 0 elements in block r, counts.size() == world, the same on every rank; block r
  // starts at displacement counts[0] + ... + counts[r-1]. Throws Error (before any communication)
  // on a bad size, a negative count, or totals beyond MPI's int counts. All counts 0: no-op.
  //
  // in is the W blocks; out[counts[rank]] = sum over ranks q, in rank order 0..W-1, of block
  // `rank` of q's in: the same bits all_reduce_sum gives for those elements. accumulate: out[i] +=
  // that sum (formed first, then added once). Without accumulate, out may be in + displacement
  // of block `rank`.
  virtual CommHandle reduce_scatter_sum_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out,
                                                bool accumulate) = 0;
  // out = the blocks of every rank in rank order, rank r's in[counts[r]] at displacement r. in
  // may be out + displacement of block `rank`.
  virtual CommHandle all_gather_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out) = 0;
  void reduce_scatter_sum_v(const float* in, const std::vector<std::int64_t>& counts, float* out, bool accumulate) {
    reduce_scatter_sum_v_async(in, counts, out, accumulate).wait();
  }
  void all_gather_v(const float* in, const std::vector<std::int64_t>& counts, float* out) {
    all_gather_v_async(in, counts, out).wait();
  }

  // Bytes this rank has received from other ranks in the fp32 and f64 collectives so far,
  // counted when each starts (benchmarks: traffic per training step). Per op, with W ranks,
  // S = ceil(n / W) and m = this rank's block (min(S, n - rank * S), at least 0):
  //   all_reduce of n: (W - 1) * m + (n - m) elements (its block from every other rank, then the
  //     other blocks); reduce_scatter: (W - 1) * shard; reduce_scatter_v: (W - 1) * counts[rank];
  //   all_gather: (W - 1) * shard; all_gather_v: sum of counts - counts[rank]; broadcast: n off
  //     the root, 0 on it. barrier and check_same are not counted. Always 0 for the single backend.
  virtual std::int64_t traffic_bytes() const = 0;

  // Scratch: nullptr (the default) uses the communicator's own pool (recycled, so steady-state
  // steps do not allocate); otherwise every scratch buffer comes from a, held only while its op
  // needs it and released to a then. Scratch held by an op in flight, with m as above:
  //   all_reduce of n (fp32 or f64): W * m elements, released after the local sum (before the
  //     gather phase); reduce_scatter: W * shard; reduce_scatter_v: W * counts[rank] floats; the
  //     other collectives: none.
  // Change it only with no collective in flight (throws Error otherwise); a must outlive every
  // op started while it is set. The single backend needs no scratch and ignores it. NCCL: a gives
  // device memory for the fp32 collectives, released once the host has seen the op's local sum
  // complete; the f64 sums run on the host over MPI with a small host pool of their own.
  // After a failure, scratch held by unfinished ops is not released (the device may still
  // write it; the job is aborted next).
  virtual void set_scratch_allocator(ScratchAllocator* a) = 0;

  // Host scalars (loss sums, token counts, squared gradient norms), deterministic like the
  // fp32 sums. max propagates NaN.
  virtual void all_reduce_sum_f64(double* x, std::int64_t n) = 0;
  virtual void all_reduce_max_f64(double* x, std::int64_t n) = 0;

  // Every rank passes a hash of the same thing (resolved recipe, data manifest); when they
  // differ, every rank throws the same Error naming what, and which ranks on which hosts hold
  // which hash.
  virtual void check_same(const std::string& what, std::uint64_t hash) = 0;

  // End the whole job now: print message on stderr, then MPI_Abort (so no rank waits on this
  // one). For the single backend: print and exit(1). Never returns.
  [[noreturn]] virtual void abort(const std::string& message) = 0;
};

// Single process when world_size is 1; MPI when launched by mpirun (or srun with PMIx) with
// OpenMPI, checking that MPI's rank and size agree with the launch environment. A
// torchrun-style launch without MPI variables throws (launch with mpirun or srun; NCCL over
// TCP is a later step). timeout_seconds bounds every collective, counted from wait().
//
// device_buffers: the fp32 collectives take CUDA device pointers. World 1: the single backend
// with device copies (needs a CUDA build, not NCCL). More ranks: NCCL, bootstrapped over MPI
// (so launched by mpirun or srun as above); throws Error when the build has no NCCL.
std::unique_ptr<Communicator> make_communicator(const LaunchInfo& info, double timeout_seconds,
                                                bool device_buffers = false);

// device_buffers: copies and adds run on the GPU (cudaMemcpy and a small kernel on the legacy
// default stream, waited for before returning); throws Error in a build without CUDA.
std::unique_ptr<Communicator> make_single_communicator(double timeout_seconds, bool device_buffers = false);
std::unique_ptr<Communicator> make_mpi_communicator(const LaunchInfo& info, double timeout_seconds);

#ifdef LLMLAB_HAVE_NCCL
// The NCCL backend at any world size, 1 included (make_communicator picks the single backend
// there; tests call this to run NCCL on one GPU). Selects CUDA device info.local_rank, owns an
// MPI communicator for host scalars, check_same, barrier and the ncclUniqueId bootstrap, so it
// needs mpirun or srun --mpi=pmix like the MPI backend. Defined only in builds with NCCL
// (LLMLAB_HAVE_NCCL, set by CMake when nccl.h and libnccl are found beside CUDA).
std::unique_ptr<Communicator> make_nccl_communicator(const LaunchInfo& info, double timeout_seconds);
#endif

}  // namespace llmlab
