// ZeRO stages 0-3 (Rajbhandari et al., arXiv 1910.02054) over a Communicator: which model
// states a rank stores, and which collectives run when.
//
//   stage 0  parameters, gradients, AdamW states whole on every rank; gradients all-reduced
//            during the last micro-batch's backward, unit by unit as they are complete.
//   stage 1  AdamW states sharded: gradients reduce-scattered (same timing), each rank
//            updates its shard, parameters all-gathered after the update.
//   stage 2  gradients sharded too: every micro-batch, each unit's gradients go to a bucket
//            and are reduce-scattered into the owners' shards as soon as its backward ends.
//   stage 3  parameters sharded too: each unit is all-gathered just before a use (forward,
//            recompute, backward) into one of 1 + zero.prefetch_layers slots, the next units
//            of the step prefetched (their order is recorded on the first micro-batch, as
//            DeepSpeed traces modules); a unit still in a slot is not gathered again.
//
// Every rank owns the flat range [r * S, (r + 1) * S) of S = ceil(numel / world) elements,
// for all stages, and the global gradient norm is the rank-order sum of the shards' squared
// norms; with the communicator's rank-order sums this makes stages 0 and 1 bit-identical
// (and 2, 3 as well when there is one micro-batch per step). The engine's buffers (gather
// slots, gradient buckets, reduction scratch) are exactly the Plan's zero_buffers, tracked.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dist/communicator.hpp"
#include "model/param_access.hpp"
#include "model/tracked_memory.hpp"
#include "model/weights.hpp"
#include "plan/plan.hpp"

namespace llmlab {

// What the weights of a rank store under `stage` (whole or sharded).
WeightsLayout zero_layout(int stage, const Communicator& comm);

class ZeroEngine final : public ParamAccess {
 public:
  // `run` carries zero.* and dist.world_size (= comm.world_size()).
  ZeroEngine(Weights& weights, Communicator& comm, Backend& backend, TrackedMemory& mem, const RunSettings& run);
  ~ZeroEngine() override;
  ZeroEngine(const ZeroEngine&) = delete;
  ZeroEngine& operator=(const ZeroEngine&) = delete;

  int stage() const { return stage_; }

  void begin_micro_batch(bool training, bool last) override;
  void acquire(std::size_t unit, bool grads) override;
  void release(std::size_t unit, bool grads) override;

  // After the step's last backward: every reduction is complete, and this rank's shard of
  // the gradients (all of them at stage 0) holds the sum over ranks.
  void finish_gradients();
  // The flat range this rank's optimizer updates: everything at stage 0, its shard otherwise;
  // and how many elements its optimizer states hold (the shard, padded, as the Plan counts).
  std::int64_t update_begin() const;
  std::int64_t update_end() const;
  std::int64_t optimizer_elements() const;
  // Squared L2 norm of the whole gradient: shards' sums added in rank order, on every rank.
  double grad_sum_squares();
  // After the optimizer step: stages 1-2 all-gather the updated parameters; stage 3 forgets
  // gathered copies.
  void after_update();
  void zero_grads();
  // The whole flat parameter buffer into `dst` (numel floats) on every rank (stage 3 gathers).
  void gather_params(float* dst);

  std::int64_t traffic_bytes() const { return comm_.traffic_bytes(); }

 private:
  struct Range {
    std::int64_t begin, end;  // flat elements
    std::int64_t pos;         // where it sits in a gathered unit / bucket
  };
  struct Slot {
    float* data = nullptr;
    long unit = -1;
    bool pinned = false;
    std::uint64_t last_use = 0;
    std::vector<CommHandle> pending;
  };
  class Scratch;

  std::vector<std::int64_t> counts(std::int64_t begin, std::int64_t end) const;
  void reduce_range(const Range& r, float* src, bool accumulate_into_shard);
  Slot& gather_into_slot(std::size_t unit, const std::vector<std::size_t>& window);
  void bind_unit(std::size_t unit, float* w, float* g);

  Weights& w_;
  Communicator& comm_;
  Backend& be_;
  TrackedMemory& mem_;
  int stage_, world_, rank_;
  std::int64_t chunk_;
  std::vector<std::vector<Range>> ranges_;  // per unit: own range then borrowed tensors
  std::vector<Range> own_;                  // per unit: its own tensors
  std::vector<Slot> slots_;
  std::vector<float*> buckets_;
  std::size_t next_bucket_ = 0;
  std::vector<long> bucket_of_unit_;  // bucket a unit's gradients go to while acquired
  Tracked<float> gather_buffer_, bucket_buffer_, scratch_buffer_;
  std::unique_ptr<Scratch> scratch_;
  CommHandle scratch_handle_;  // the reduction holding the scratch buffer
  long scratch_bucket_ = -1;   // the gradient bucket it reads, if any
  std::vector<CommHandle> gathers_;  // stage 1-2 parameter all-gathers
  bool training_ = false, last_ = true;
  std::vector<std::size_t> trace_;  // unit acquire order of a training micro-batch (stage 3)
  bool traced_ = false, on_trace_ = false;
  std::size_t trace_pos_ = 0;
  std::uint64_t clock_ = 0;
};

}  // namespace llmlab
