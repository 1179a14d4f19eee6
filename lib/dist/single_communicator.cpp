// The world-of-one communicator: every collective is a copy or nothing (host memory, or device
// memory through ops/cuda's CUDA-free helpers), and the factory that picks a backend from the
// launch environment.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "dist/communicator.hpp"
#ifdef LLMLAB_HAVE_CUDA
#include "ops/cuda/device_memory.hpp"
#endif

namespace llmlab {
namespace {

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

class SingleCommunicator final : public Communicator {
 public:
  SingleCommunicator(double timeout, bool device_buffers)
      : timeout_(timeout), host_(this_host()), device_(device_buffers) {}

  const char* backend() const override { return "single"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  const std::string& host() const override { return host_; }
  std::string host_of(int r) const override {
    check_rank(r, "host_of");
    return host_;
  }
  double timeout_seconds() const override { return timeout_; }
  bool failed() const override { return false; }

  CommHandle all_reduce_sum_async(float*, std::int64_t n) override {
    check_count(n, "all_reduce");
    return {};
  }
  CommHandle reduce_scatter_sum_async(const float* in, float* out, std::int64_t shard) override {
    check_count(shard, "reduce_scatter");
    copy(in, out, shard);
    return {};
  }
  CommHandle all_gather_async(const float* in, float* out, std::int64_t shard) override {
    check_count(shard, "all_gather");
    copy(in, out, shard);
    return {};
  }
  CommHandle broadcast_async(float*, std::int64_t n, int root) override {
    check_count(n, "broadcast");
    check_rank(root, "broadcast root");
    return {};
  }
  CommHandle reduce_scatter_sum_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out,
                                        bool accumulate) override {
    const std::int64_t n = check_counts(counts, "reduce_scatter_v");
    if (!accumulate) {
      copy(in, out, n);
    } else if (device_) {
      add_on_device(out, in, n);
    } else {
      for (std::int64_t i = 0; i < n; ++i) out[i] += in[i];
    }
    return {};
  }
  CommHandle all_gather_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out) override {
    copy(in, out, check_counts(counts, "all_gather_v"));
    return {};
  }
  std::int64_t traffic_bytes() const override { return 0; }
  void set_scratch_allocator(ScratchAllocator*) override {}
  void barrier() override {}
  void all_reduce_sum_f64(double*, std::int64_t n) override { check_count(n, "all_reduce_sum_f64"); }
  void all_reduce_max_f64(double*, std::int64_t n) override { check_count(n, "all_reduce_max_f64"); }
  void check_same(const std::string&, std::uint64_t) override {}

  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::exit(1);
  }

 private:
  void copy(const float* in, float* out, std::int64_t n) const {
    if (in == out || n <= 0) return;
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
#ifdef LLMLAB_HAVE_CUDA
    if (device_) {  // in place (returned above) or disjoint: the contract's only cases
      device_copy(out, in, bytes);
      return;
    }
#endif
    std::memmove(out, in, bytes);
  }
  // Only reached with device_, which the factory grants only in CUDA builds.
  static void add_on_device([[maybe_unused]] float* out, [[maybe_unused]] const float* in,
                            [[maybe_unused]] std::int64_t n) {
#ifdef LLMLAB_HAVE_CUDA
    device_add(out, in, n);
#endif
  }
  static void check_count(std::int64_t n, const char* what) {
    if (n < 0) throw Error(fmt::format("{}: negative element count {}", what, n));
  }
  // The one block's count.
  static std::int64_t check_counts(const std::vector<std::int64_t>& counts, const char* what) {
    if (counts.size() != 1) throw Error(fmt::format("{}: {} counts for a world of 1", what, counts.size()));
    check_count(counts[0], what);
    return counts[0];
  }
  static void check_rank(int r, const char* what) {
    if (r != 0) throw Error(fmt::format("{}: rank {} outside a world of 1", what, r));
  }

  double timeout_;
  std::string host_;
  bool device_;  // pointers are CUDA device memory
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator(double timeout_seconds, bool device_buffers) {
#ifndef LLMLAB_HAVE_CUDA
  if (device_buffers)
    throw Error("device buffers asked of the single communicator, but this build has no CUDA (configure with "
                "-DLLMLAB_CUDA=ON where nvcc is installed)");
#endif
  return std::make_unique<SingleCommunicator>(timeout_seconds, device_buffers);
}

std::unique_ptr<Communicator> make_communicator(const LaunchInfo& info, double timeout_seconds, bool device_buffers) {
  if (!(timeout_seconds > 0))
    throw Error(fmt::format("communicator timeout must be positive, got {}", timeout_seconds));
  if (info.world_size == 1) return make_single_communicator(timeout_seconds, device_buffers);
  const bool mpi = info.launcher == "mpirun" || info.launcher == "slurm" || info.mpi_bootstrap;
  if (mpi && device_buffers) {
#ifdef LLMLAB_HAVE_NCCL
    return make_nccl_communicator(info, timeout_seconds);
#else
    throw Error(fmt::format(
        "{}: this build has no NCCL: device buffers across {} ranks need the NCCL backend; install NCCL (nccl.h "
        "and libnccl beside CUDA, e.g. /usr/local/cuda) and reconfigure with -DLLMLAB_CUDA=ON",
        describe(info), info.world_size));
#endif
  }
  if (mpi) return make_mpi_communicator(info, timeout_seconds);
  throw Error(fmt::format(
      "{}: launched {} with MASTER_ADDR={}:{}, but this build communicates over MPI, which cannot join "
      "that rendezvous; launch with `mpirun -np {}` or `srun --mpi=pmix -n {}` (NCCL over TCP is a later step)",
      describe(info), info.launcher, info.master_addr, info.master_port, info.world_size, info.world_size));
}

}  // namespace llmlab
