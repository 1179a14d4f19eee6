// Checkpointing policies as per-layer decisions (internal to lib/plan): which slots each
// layer keeps, which it rebuilds in backward and at what FLOP cost, and the step timeline
// that turns those decisions into a peak.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "plan/plan.hpp"

namespace llmlab {

// Sets mode, kept/rebuilt bytes and recompute FLOPs of `layer`.
void assign_mode(LayerPlan& layer, const BlockProfile& profile, LayerMode mode, bool segment_start);

// Decides every layer's mode for run.checkpointing.policy. `step_budget` is what the budget
// policy may fill with step memory (activations, loss, temporaries).
void apply_checkpoint_policy(Plan& plan, std::int64_t step_budget);

struct StepPeak {
  std::vector<PeakPart> parts;  // activations, loss and temporaries at the peak
  std::int64_t total = 0;
  std::string phase;
};

// Walks forward, loss and backward, layer by layer, and returns the largest step memory.
StepPeak simulate_step(const Plan& plan);

// Residual-stream gradients held throughout backward (incoming and outgoing).
std::int64_t residual_grad_bytes(const Plan& plan);

}  // namespace llmlab
