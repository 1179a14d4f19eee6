// A decoder model executing its Plan: one forward and backward of a micro-batch walks the
// plan's layers, allocating each activation slot from tracked memory, freeing what the
// layer's checkpointing mode does not keep, and rebuilding it in backward (a layer, a
// segment of layers, or just the dropped slots). Gradients are bit-identical for every mode
// because rebuilding runs the same deterministic ops on the same inputs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "data/batch.hpp"
#include "model/decoder_block.hpp"
#include "model/param_access.hpp"
#include "model/tracked_memory.hpp"
#include "model/weights.hpp"
#include "plan/plan.hpp"

namespace llmlab {

class Model {
 public:
  // `plan` must come from make_plan(spec, run) for the same settings (train and memory-plan
  // build it the same way). Allocates parameters and gradients from `mem`, whole or sharded
  // as `layout` says.
  Model(const Plan& plan, Backend& backend, TrackedMemory& mem, WeightsLayout layout = {});

  // Where parameters come from under ZeRO; nullptr (the default): the whole stored buffers.
  // `access` must outlive the model's passes.
  void set_param_access(ParamAccess* access) { access_ = access; }

  const Plan& plan() const { return plan_; }
  const ModelSpec& spec() const { return plan_.model; }
  Weights& weights() { return weights_; }
  const Weights& weights() const { return weights_; }

  // Forward and backward of one micro-batch. Weight gradients accumulate; each counted
  // token's loss enters the gradient multiplied by grad_scale (1 / tokens of the whole step
  // gives per-token normalisation across gradient accumulation). Returns the sum of losses.
  // `last` marks the last micro-batch before the optimizer step (ZeRO reduces then).
  double forward_backward(const Batch& batch, float grad_scale, bool last = true);
  // Forward only (evaluation): the sum of token losses; nothing is kept between layers.
  double forward_loss(const Batch& batch);

  // Losses defined on log-probabilities that are known only after the forward (RL policy
  // losses): `fn` receives log p(target) of every token ([T], 0 where the token does not
  // count) and writes d loss / d log p(target) into dlogp ([T], zero-filled; ignored where
  // the token does not count). Weight gradients accumulate as in forward_backward. Returns
  // the sum of counted token losses (-sum log p).
  using TokenGradient = std::function<void(std::span<const float> logp, std::span<float> dlogp)>;
  double forward_backward(const Batch& batch, const TokenGradient& fn, bool last = true);
  // Forward only: log p(target) of every token ([T], 0 where the token does not count).
  std::vector<float> token_logprobs(const Batch& batch);

 private:
  struct Inputs;
  void upload(const Batch& batch, Inputs& in, BatchView& view);
  double forward(const BatchView& view, bool keep_for_backward, float grad_scale,
                 const TokenGradient* token_gradient = nullptr, std::vector<float>* logp = nullptr);
  void token_losses(const BatchView& view, std::vector<float>& logp);
  void backward(const BatchView& view);
  void allocate_slots(std::size_t layer);
  void free_slots(std::size_t layer, bool only_dropped);
  BlockContext context(const BatchView& view, std::size_t layer) const;
  void acquire(std::size_t unit, bool grads) {
    if (access_) access_->acquire(unit, grads);
  }
  void release(std::size_t unit, bool grads) {
    if (access_) access_->release(unit, grads);
  }

  Plan plan_;
  Backend& be_;
  TrackedMemory& mem_;
  Weights weights_;
  ParamAccess* access_ = nullptr;
  std::vector<std::size_t> unit_of_layer_;
  std::size_t embedding_unit_ = 0, head_unit_ = 0;
  std::vector<BlockSlots> slot_maps_;      // per profile
  std::vector<SlotPointers> slots_;        // per layer
  SlotPointers head_;                      // output head slots
  int head_input_ = -1, head_stats_ = -1, head_out_ = -1, head_logits_ = -1, head_lse_ = -1, head_losses_ = -1;
};

}  // namespace llmlab
