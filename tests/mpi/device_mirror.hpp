// comm-check --device cuda: a Communicator that runs every fp32 collective of another one on
// device copies of the caller's host buffers, so each host-side check in comm_check.cpp runs
// unchanged against a device backend (NCCL, or the single backend with device buffers).
// Host buffers that overlap or touch (in place: out inside in, or in inside out) share one
// device buffer at the same offsets, so the backend sees the in-place case the caller wrote.
// Host scalars, check_same and barrier go straight through. Built only with CUDA.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/communicator.hpp"
#include "ops/cuda/device_memory.hpp"

namespace llmlab {

class DeviceMirror final : public Communicator {
 public:
  explicit DeviceMirror(Communicator& inner) : c_(inner) {}
  ~DeviceMirror() override {
    try {
      free_idle();
    } catch (...) {  // a device error at exit: the checks have reported by now
    }
  }

  const char* backend() const override { return c_.backend(); }
  int rank() const override { return c_.rank(); }
  int world_size() const override { return c_.world_size(); }
  const std::string& host() const override { return c_.host(); }
  std::string host_of(int r) const override { return c_.host_of(r); }
  double timeout_seconds() const override { return c_.timeout_seconds(); }
  bool failed() const override { return c_.failed(); }

  CommHandle all_reduce_sum_async(float* x, std::int64_t n) override {
    if (n <= 0) return c_.all_reduce_sum_async(x, n);
    Mapped m = map(x, n, x, n);
    return start(m, [&] { return c_.all_reduce_sum_async(m.out, n); });
  }
  CommHandle reduce_scatter_sum_async(const float* in, float* out, std::int64_t shard) override {
    if (shard <= 0) return c_.reduce_scatter_sum_async(in, out, shard);
    Mapped m = map(in, world_size() * shard, out, shard);
    return start(m, [&] { return c_.reduce_scatter_sum_async(m.in, m.out, shard); });
  }
  CommHandle all_gather_async(const float* in, float* out, std::int64_t shard) override {
    if (shard <= 0) return c_.all_gather_async(in, out, shard);
    Mapped m = map(in, shard, out, world_size() * shard);
    return start(m, [&] { return c_.all_gather_async(m.in, m.out, shard); });
  }
  CommHandle broadcast_async(float* x, std::int64_t n, int root) override {
    if (n <= 0 || root < 0 || root >= world_size()) return c_.broadcast_async(x, n, root);
    Mapped m = map(x, n, x, n);
    return start(m, [&] { return c_.broadcast_async(m.out, n, root); });
  }
  // Bad counts go through as they are: the backend must refuse them before touching memory.
  CommHandle reduce_scatter_sum_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out,
                                        bool accumulate) override {
    const std::int64_t total = valid_total(counts);
    if (total <= 0) return c_.reduce_scatter_sum_v_async(in, counts, out, accumulate);
    Mapped m = map(in, total, out, counts[static_cast<std::size_t>(rank())]);
    return start(m, [&] { return c_.reduce_scatter_sum_v_async(m.in, counts, m.out, accumulate); });
  }
  CommHandle all_gather_v_async(const float* in, const std::vector<std::int64_t>& counts, float* out) override {
    const std::int64_t total = valid_total(counts);
    if (total <= 0) return c_.all_gather_v_async(in, counts, out);
    Mapped m = map(in, counts[static_cast<std::size_t>(rank())], out, total);
    return start(m, [&] { return c_.all_gather_v_async(m.in, counts, m.out); });
  }

  std::int64_t traffic_bytes() const override { return c_.traffic_bytes(); }
  void set_scratch_allocator(ScratchAllocator* a) override { c_.set_scratch_allocator(a); }
  void barrier() override { c_.barrier(); }
  void all_reduce_sum_f64(double* x, std::int64_t n) override { c_.all_reduce_sum_f64(x, n); }
  void all_reduce_max_f64(double* x, std::int64_t n) override { c_.all_reduce_max_f64(x, n); }
  void check_same(const std::string& what, std::uint64_t hash) override { c_.check_same(what, hash); }
  [[noreturn]] void abort(const std::string& message) override {
    c_.abort(message);
    std::_Exit(1);  // the backend's abort never returns; this only satisfies [[noreturn]]
  }

 private:
  // Device views of one collective's buffers, and where its output goes back to.
  struct Mapped {
    float* in = nullptr;
    float* out = nullptr;
    std::vector<void*> buffers;
    float* host_out = nullptr;
    std::int64_t out_n = 0;
  };

  // The op's handle: the output comes back to the host once the backend's op is complete.
  class MirrorOp final : public CommHandle::Op {
   public:
    MirrorOp(DeviceMirror& mirror, CommHandle inner, Mapped m)
        : mirror_(mirror), inner_(std::move(inner)), m_(std::move(m)) {}
    ~MirrorOp() override {
      if (done_) return;
      try {
        wait();
      } catch (...) {  // the communicator is failed() now; comm-check reports it
      }
    }
    bool test() override {
      if (!done_ && inner_.test()) finish();
      return done_;
    }
    void wait() override {
      if (done_) return;
      inner_.wait();
      finish();
    }

   private:
    void finish() {
      done_ = true;
      try {
        copy_to_host(m_.host_out, m_.out, static_cast<std::size_t>(m_.out_n) * sizeof(float));
      } catch (...) {
        mirror_.retire(m_.buffers);
        throw;
      }
      mirror_.retire(m_.buffers);
    }
    DeviceMirror& mirror_;
    CommHandle inner_;
    Mapped m_;
    bool done_ = false;
  };

  std::int64_t valid_total(const std::vector<std::int64_t>& counts) const {
    if (counts.size() != static_cast<std::size_t>(world_size())) return -1;
    std::int64_t total = 0;
    for (std::int64_t n : counts) {
      if (n < 0) return -1;
      total += n;
    }
    return total;
  }

  // One device buffer for the union of the two host ranges when they overlap or touch, else one
  // each; both filled from the host (the output too: accumulate reads it).
  Mapped map(const float* in, std::int64_t in_n, float* out, std::int64_t out_n) {
    Mapped m;
    m.host_out = out;
    m.out_n = out_n;
    const auto at = [](const float* p) { return reinterpret_cast<std::uintptr_t>(p); };
    const std::uintptr_t in_end = at(in) + static_cast<std::uintptr_t>(in_n) * sizeof(float),
                         out_end = at(out) + static_cast<std::uintptr_t>(out_n) * sizeof(float);
    if (in && out && at(in) <= out_end && at(out) <= in_end) {
      const float* lo = at(in) < at(out) ? in : out;
      const std::size_t bytes = std::max(in_end, out_end) - at(lo);
      auto* base = static_cast<float*>(device_alloc(bytes));
      m.buffers.push_back(base);
      copy_to_device(base, lo, bytes);
      m.in = base + (in - lo);
      m.out = base + (out - lo);
      return m;
    }
    m.in = upload(m, in, in_n);
    m.out = upload(m, out, out_n);
    return m;
  }
  static float* upload(Mapped& m, const float* host, std::int64_t n) {
    if (!host || n <= 0) return nullptr;
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
    auto* p = static_cast<float*>(device_alloc(bytes));
    m.buffers.push_back(p);
    copy_to_device(p, host, bytes);
    return p;
  }

  CommHandle start(Mapped& m, const std::function<CommHandle()>& issue) {
    CommHandle inner;
    try {
      inner = issue();
    } catch (...) {
      try {
        retire_now(m.buffers);
      } catch (...) {  // the backend's error is the one to report
      }
      throw;
    }
    ++in_flight_;
    return CommHandle(std::make_unique<MirrorOp>(*this, std::move(inner), std::move(m)));
  }
  // cudaFree waits for the whole device, collectives in flight included: buffers are freed
  // only once no op of this mirror is in flight.
  void retire(const std::vector<void*>& buffers) {
    --in_flight_;
    retire_now(buffers);
  }
  void retire_now(const std::vector<void*>& buffers) {
    idle_.insert(idle_.end(), buffers.begin(), buffers.end());
    if (in_flight_ == 0) free_idle();
  }
  void free_idle() {
    for (void* p : idle_) device_free(p);
    idle_.clear();
  }

  Communicator& c_;
  int in_flight_ = 0;
  std::vector<void*> idle_;
};

}  // namespace llmlab
