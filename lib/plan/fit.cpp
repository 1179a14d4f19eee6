// The --fit search: every combination of the free settings is planned; the fastest that fits
// wins, ties going to the larger micro-batch, the lower ZeRO stage and the simpler policy.
#include "plan/fit.hpp"

#include <fmt/format.h>

#include <cmath>

#include "core/units.hpp"

namespace llmlab {

std::string describe_checkpointing(const Plan& plan) {
  const auto& c = plan.run.checkpointing;
  switch (c.policy) {
    case CheckpointPolicy::selective: return fmt::format("selective ({})", selective_name(c.selective));
    case CheckpointPolicy::every_k: return fmt::format("every_k (k={})", plan.segment_length);
    case CheckpointPolicy::sqrt: return fmt::format("sqrt (k={})", plan.segment_length);
    case CheckpointPolicy::budget: {
      std::size_t recomputed = 0, partial = 0;
      for (const auto& l : plan.layers) {
        if (l.mode == LayerMode::recompute) ++recomputed;
        if (l.mode == LayerMode::drop_core || l.mode == LayerMode::drop_pointwise) ++partial;
      }
      std::string s = fmt::format("budget (recomputes {}/{} layers", recomputed, plan.layers.size());
      if (partial) s += fmt::format(", {} selectively", partial);
      return s + ")";
    }
    default: return policy_name(c.policy);
  }
}

namespace {

struct PolicyChoice {
  CheckpointPolicy policy;
  SelectiveScope scope;
};

std::vector<std::int64_t> divisors(std::int64_t n) {
  std::vector<std::int64_t> low, high;
  for (std::int64_t d = 1; d <= n / d; ++d) {
    if (n % d != 0) continue;
    low.push_back(d);
    if (d != n / d) high.push_back(n / d);
  }
  low.insert(low.end(), high.rbegin(), high.rend());
  return low;
}

// Order of preference when times tie: less machinery first.
int simplicity(CheckpointPolicy p) {
  switch (p) {
    case CheckpointPolicy::none: return 0;
    case CheckpointPolicy::selective: return 1;
    case CheckpointPolicy::budget: return 2;
    case CheckpointPolicy::every_k: return 3;
    case CheckpointPolicy::sqrt: return 4;
    case CheckpointPolicy::full: return 5;
  }
  return 6;
}

bool better(const FitCandidate& a, const FitCandidate& b) {
  // Within 0.5% the estimates are indistinguishable; prefer what is simpler to run.
  if (std::fabs(a.step_seconds - b.step_seconds) > 0.005 * std::max(a.step_seconds, b.step_seconds))
    return a.step_seconds < b.step_seconds;
  if (a.run.train.micro_batch_size != b.run.train.micro_batch_size)
    return a.run.train.micro_batch_size > b.run.train.micro_batch_size;
  if (a.run.zero.stage != b.run.zero.stage) return a.run.zero.stage < b.run.zero.stage;
  return simplicity(a.run.checkpointing.policy) < simplicity(b.run.checkpointing.policy);
}

}  // namespace

FitResult fit_search(const ModelSpec& model, const RunSettings& base, const FitSpace& space) {
  std::vector<std::int64_t> stages{base.zero.stage};
  if (space.vary_stage) stages = {0, 1, 2, 3};
  std::vector<PolicyChoice> policies{{base.checkpointing.policy, base.checkpointing.selective}};
  if (space.vary_policy)
    policies = {{CheckpointPolicy::none, SelectiveScope::core},      {CheckpointPolicy::selective, SelectiveScope::core},
                {CheckpointPolicy::selective, SelectiveScope::pointwise}, {CheckpointPolicy::budget, SelectiveScope::core},
                {CheckpointPolicy::sqrt, SelectiveScope::core},      {CheckpointPolicy::full, SelectiveScope::core}};
  const std::int64_t per_rank_batch = base.train.micro_batch_size * base.train.gradient_accumulation_steps;
  std::vector<std::int64_t> micro_batches{base.train.micro_batch_size};
  if (space.vary_micro_batch) micro_batches = divisors(per_rank_batch);

  FitResult result;
  for (std::int64_t stage : stages) {
    for (const auto& pc : policies) {
      for (std::int64_t mb : micro_batches) {
        RunSettings run = base;
        run.zero.stage = stage;
        run.checkpointing.policy = pc.policy;
        run.checkpointing.selective = pc.scope;
        if (space.vary_policy) run.checkpointing.budget = 0;  // fill what the device leaves
        run.train.micro_batch_size = mb;
        run.train.gradient_accumulation_steps = per_rank_batch / mb;
        const Plan plan = make_plan(model, run);
        FitCandidate c{run, plan.peak_bytes, plan.compute.step_seconds, plan.compute.recompute_flops, plan.fits,
                       describe_checkpointing(plan)};
        result.tried.push_back(c);
        if (c.fits && (!result.best || better(c, result.tried[*result.best]))) result.best = result.tried.size() - 1;
      }
    }
  }

  std::size_t fitting = 0;
  for (const auto& c : result.tried) fitting += c.fits;
  const double limit = static_cast<double>(base.hardware.memory);
  if (!result.best) {
    std::size_t smallest = 0;
    for (std::size_t i = 1; i < result.tried.size(); ++i)
      if (result.tried[i].peak_bytes < result.tried[smallest].peak_bytes) smallest = i;
    const auto& s = result.tried[smallest];
    const std::string advice = !space.vary_stage && base.zero.stage < 3
                                   ? "let zero.stage vary (drop it from the command line)"
                                   : "add ranks (dist.world_size), shorten data.packing_length or use a larger device";
    result.reason = fmt::format(
        "nothing fits in {}: the smallest of {} configurations (ZeRO-{}, micro-batch {}, checkpointing {}) "
        "needs {}; {}",
        format_bytes(limit), result.tried.size(), s.run.zero.stage, s.run.train.micro_batch_size, s.checkpointing,
        format_bytes(static_cast<double>(s.peak_bytes)), advice);
    return result;
  }
  const auto& b = result.tried[*result.best];
  result.reason = fmt::format(
      "fastest of {} fitting configurations ({} tried): ZeRO-{}, micro-batch {} x {} accumulation, "
      "checkpointing {}; est. {} per step, peak {} of {}",
      fitting, result.tried.size(), b.run.zero.stage, b.run.train.micro_batch_size,
      b.run.train.gradient_accumulation_steps, b.checkpointing, format_seconds(b.step_seconds),
      format_bytes(static_cast<double>(b.peak_bytes)), format_bytes(limit));
  return result;
}

}  // namespace llmlab
