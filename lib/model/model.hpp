// A decoder model executing its Plan: one forward and backward of a micro-batch walks the
// plan's layers, allocating each activation slot from tracked memory, freeing what the
// layer's checkpointing mode does not keep, and rebuilding it in backward (a layer, a
// segment of layers, or just the dropped slots). Gradients are bit-identical for every mode
// because rebuilding runs the same deterministic ops on the same inputs.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "data/batch.hpp"
#include "model/decoder_block.hpp"
#include "model/tracked_memory.hpp"
#include "model/weights.hpp"
#include "plan/plan.hpp"

namespace llmlab {

class Model {
 public:
  // `plan` must come from make_plan(spec, run) for the same settings (train and memory-plan
  // build it the same way). Allocates parameters and gradients from `mem`.
  Model(const Plan& plan, Backend& backend, TrackedMemory& mem);

  const Plan& plan() const { return plan_; }
  const ModelSpec& spec() const { return plan_.model; }
  Weights& weights() { return weights_; }
  const Weights& weights() const { return weights_; }

  // Forward and backward of one micro-batch. Weight gradients accumulate; each counted
  // token's loss enters the gradient multiplied by grad_scale (1 / tokens of the whole step
  // gives per-token normalisation across gradient accumulation). Returns the sum of losses.
  double forward_backward(const Batch& batch, float grad_scale);
  // Forward only (evaluation): the sum of token losses; nothing is kept between layers.
  double forward_loss(const Batch& batch);

 private:
  struct Inputs;
  void upload(const Batch& batch, Inputs& in, BatchView& view);
  double forward(const BatchView& view, bool keep_for_backward, float grad_scale);
  void backward(const BatchView& view);
  void allocate_slots(std::size_t layer);
  void free_slots(std::size_t layer, bool only_dropped);
  BlockContext context(const BatchView& view, std::size_t layer) const;

  Plan plan_;
  Backend& be_;
  TrackedMemory& mem_;
  Weights weights_;
  std::vector<BlockParams> params_;
  std::vector<BlockSlots> slot_maps_;      // per profile
  std::vector<SlotPointers> slots_;        // per layer
  SlotPointers head_;                      // output head slots
  int head_input_ = -1, head_stats_ = -1, head_out_ = -1, head_logits_ = -1, head_lse_ = -1, head_losses_ = -1;
};

}  // namespace llmlab
