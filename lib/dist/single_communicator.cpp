// The world-of-one communicator: every collective is a copy or nothing, and the factory that
// picks a backend from the launch environment.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "dist/communicator.hpp"

namespace llmlab {
namespace {

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

class SingleCommunicator final : public Communicator {
 public:
  explicit SingleCommunicator(double timeout) : timeout_(timeout), host_(this_host()) {}

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
  static void copy(const float* in, float* out, std::int64_t n) {
    if (in != out && n > 0) std::memmove(out, in, static_cast<std::size_t>(n) * sizeof(float));
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
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator(double timeout_seconds) {
  return std::make_unique<SingleCommunicator>(timeout_seconds);
}

std::unique_ptr<Communicator> make_communicator(const LaunchInfo& info, double timeout_seconds) {
  if (!(timeout_seconds > 0))
    throw Error(fmt::format("communicator timeout must be positive, got {}", timeout_seconds));
  if (info.world_size == 1) return make_single_communicator(timeout_seconds);
  if (info.launcher == "mpirun" || info.launcher == "slurm" || info.mpi_bootstrap)
    return make_mpi_communicator(info, timeout_seconds);
  throw Error(fmt::format(
      "{}: launched {} with MASTER_ADDR={}:{}, but this build communicates over MPI, which cannot join "
      "that rendezvous; launch with `mpirun -np {}` or `srun --mpi=pmix -n {}` (NCCL over TCP is a later step)",
      describe(info), info.launcher, info.master_addr, info.master_port, info.world_size, info.world_size));
}

}  // namespace llmlab
