// --fit: search the settings a recipe leaves free (ZeRO stage, checkpointing policy,
// micro-batch at a constant batch per rank) for the fastest configuration whose peak fits the
// device memory.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "plan/plan.hpp"

namespace llmlab {

struct FitSpace {
  bool vary_stage = true;
  bool vary_policy = true;
  bool vary_micro_batch = true;  // keeps micro_batch_size x gradient_accumulation_steps fixed
};

struct FitCandidate {
  RunSettings run;
  std::int64_t peak_bytes = 0;
  double step_seconds = 0;
  double recompute_flops = 0;
  bool fits = false;
  std::string checkpointing;  // e.g. "budget (recomputes 6/32 layers)"
};

struct FitResult {
  std::vector<FitCandidate> tried;
  std::optional<std::size_t> best;  // index into tried
  std::string reason;
};

FitResult fit_search(const ModelSpec& model, const RunSettings& base, const FitSpace& space);

// "full", "selective (core)", "every_k (k=4)", "budget (recomputes 6/32 layers, drops ...)".
std::string describe_checkpointing(const Plan& plan);

}  // namespace llmlab
