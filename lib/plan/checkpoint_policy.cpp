// Checkpointing policies and the step timeline.
//   none       keep every slot.
//   selective  drop the attention core (Megatron) or also pointwise outputs; rebuild per layer.
//   full       keep each layer's input, rerun its forward in backward.
//   every_k    keep the input of every k-th layer; rerun k-layer segments.
//   sqrt       every_k with Chen et al.'s k = sqrt(L*C/A) (C checkpoint, A layer activations).
//   budget     per layer, the mode that minimises recompute FLOPs within a byte budget
//              (multiple-choice knapsack by dynamic programming).
#include "plan/checkpoint_policy.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace llmlab {

namespace {

constexpr std::size_t idx(Category c) { return static_cast<std::size_t>(c); }

bool ends_segment(const Plan& plan, std::size_t i) {
  return i + 1 == plan.layers.size() || plan.layers[i + 1].segment != plan.layers[i].segment;
}

void assign_all(Plan& plan, LayerMode mode, std::int64_t k) {
  for (std::size_t i = 0; i < plan.layers.size(); ++i) {
    LayerPlan& l = plan.layers[i];
    l.segment = mode == LayerMode::recompute ? (i / static_cast<std::size_t>(k)) * static_cast<std::size_t>(k) : i;
    assign_mode(l, plan.profiles[l.profile], mode, l.segment == i);
  }
  plan.segment_length = mode == LayerMode::recompute ? k : 1;
}

const std::array<LayerMode, 4> kModes{LayerMode::keep, LayerMode::drop_core, LayerMode::drop_pointwise,
                                      LayerMode::recompute};

// The budget policy. Peak step memory is bounded by
//   fixed + sum(kept_i) + max(head phase, max_i(rebuilt_i + scratch_i))
// so for each cap on the per-layer transient we solve a knapsack on the kept bytes, then keep
// the cheapest feasible answer; the exact timeline afterwards is never above the bound.
void apply_budget(Plan& plan, std::int64_t budget) {
  const std::size_t n = plan.layers.size();
  struct Option {
    LayerMode mode;
    std::int64_t kept, transient;
    double flops;
  };
  std::vector<std::vector<Option>> options(n);
  std::set<std::int64_t> caps;
  for (std::size_t i = 0; i < n; ++i) {
    const BlockProfile& p = plan.profiles[plan.layers[i].profile];
    for (LayerMode m : kModes) {
      if (m == LayerMode::drop_core && p.bytes_of(SlotClass::core) == 0) continue;
      if (m == LayerMode::drop_pointwise && p.bytes_of(SlotClass::pointwise) == 0) continue;
      LayerPlan probe = plan.layers[i];
      assign_mode(probe, p, m, true);
      const std::int64_t transient = probe.rebuilt_bytes + p.backward_scratch;
      options[i].push_back({m, probe.kept_bytes, transient, probe.recompute_flops});
      caps.insert(transient);
    }
  }
  const std::int64_t head_phase = plan.head.total_bytes() + plan.head.backward_scratch;
  const std::int64_t fixed = input_bytes(plan.model, plan.run) + residual_grad_bytes(plan);

  constexpr std::size_t kUnits = 1024;  // knapsack resolution: 0.1% of the budget
  const double inf = std::numeric_limits<double>::infinity();
  double best_flops = inf;
  std::vector<LayerMode> best;
  for (std::int64_t cap : caps) {
    const std::int64_t room = budget - fixed - std::max(head_phase, cap);
    if (room < 0) continue;
    const std::int64_t unit = std::max<std::int64_t>(1, (room + static_cast<std::int64_t>(kUnits) - 1) /
                                                            static_cast<std::int64_t>(kUnits));
    const std::size_t units = static_cast<std::size_t>(std::min<std::int64_t>(room / unit, kUnits));
    std::vector<double> dp(units + 1, 0.0), next(units + 1);
    std::vector<std::vector<std::uint8_t>> choice(n, std::vector<std::uint8_t>(units + 1, 0));
    for (std::size_t i = 0; i < n; ++i) {
      std::fill(next.begin(), next.end(), inf);
      for (std::size_t o = 0; o < options[i].size(); ++o) {
        const Option& opt = options[i][o];
        if (opt.transient > cap) continue;
        const std::size_t cost = static_cast<std::size_t>((opt.kept + unit - 1) / unit);  // rounded up: safe
        for (std::size_t u = cost; u <= units; ++u) {
          const double f = dp[u - cost] + opt.flops;
          if (f < next[u]) {
            next[u] = f;
            choice[i][u] = static_cast<std::uint8_t>(o);
          }
        }
      }
      dp.swap(next);
    }
    if (dp[units] >= best_flops) continue;
    best_flops = dp[units];
    best.assign(n, LayerMode::recompute);
    std::size_t u = units;
    for (std::size_t i = n; i-- > 0;) {
      const Option& opt = options[i][choice[i][u]];
      best[i] = opt.mode;
      u -= static_cast<std::size_t>((opt.kept + unit - 1) / unit);
    }
  }
  plan.activation_budget = budget;
  if (best.empty()) {  // nothing fits the budget: the least memory per layer
    assign_all(plan, LayerMode::recompute, 1);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    plan.layers[i].segment = i;
    assign_mode(plan.layers[i], plan.profiles[plan.layers[i].profile], best[i], true);
  }
}

// Chen et al.: segments of k layers cost about (L/k)*C + k*A, smallest at k = sqrt(L*C/A).
// The two integers around it are both tried on the exact timeline.
void apply_sqrt(Plan& plan) {
  const double L = static_cast<double>(plan.layers.size());
  double C = 0, A = 0;
  for (const auto& l : plan.layers) {
    const BlockProfile& p = plan.profiles[l.profile];
    C += static_cast<double>(p.bytes_of(SlotClass::input));
    A += static_cast<double>(p.total_bytes());
  }
  const double k_star = std::sqrt(L * C / std::max(A, 1.0));
  std::int64_t best_k = 1, best_peak = std::numeric_limits<std::int64_t>::max();
  for (double k : {std::floor(k_star), std::ceil(k_star)}) {
    const auto ki = std::clamp<std::int64_t>(static_cast<std::int64_t>(k), 1, static_cast<std::int64_t>(L));
    assign_all(plan, LayerMode::recompute, ki);
    const std::int64_t peak = simulate_step(plan).total;
    if (peak < best_peak) {
      best_peak = peak;
      best_k = ki;
    }
  }
  assign_all(plan, LayerMode::recompute, best_k);
}

}  // namespace

bool keeps_slot(LayerMode mode, const Slot& slot, bool segment_start) {
  switch (mode) {
    case LayerMode::keep: return true;
    case LayerMode::drop_core: return slot.cls != SlotClass::core;
    case LayerMode::drop_pointwise: return slot.cls != SlotClass::core && slot.cls != SlotClass::pointwise;
    case LayerMode::recompute: return segment_start && slot.cls == SlotClass::input;
  }
  return true;
}

void assign_mode(LayerPlan& layer, const BlockProfile& profile, LayerMode mode, bool segment_start) {
  layer.mode = mode;
  layer.kept_bytes = layer.kept_loss_bytes = 0;
  double rebuild = 0;
  for (const auto& s : profile.slots) {
    if (keeps_slot(mode, s, segment_start)) {
      layer.kept_bytes += s.bytes;
      if (s.loss) layer.kept_loss_bytes += s.bytes;
    } else {
      rebuild += s.rebuild_flops;
    }
  }
  layer.rebuilt_bytes = profile.total_bytes() - layer.kept_bytes;
  layer.recompute_flops = mode == LayerMode::recompute ? profile.forward_flops : mode == LayerMode::keep ? 0 : rebuild;
}

void apply_checkpoint_policy(Plan& plan, std::int64_t step_budget) {
  const auto& c = plan.run.checkpointing;
  switch (c.policy) {
    case CheckpointPolicy::none: assign_all(plan, LayerMode::keep, 1); break;
    case CheckpointPolicy::selective:
      assign_all(plan, c.selective == SelectiveScope::core ? LayerMode::drop_core : LayerMode::drop_pointwise, 1);
      break;
    case CheckpointPolicy::full: assign_all(plan, LayerMode::recompute, 1); break;
    case CheckpointPolicy::every_k:
      assign_all(plan, LayerMode::recompute,
                 std::clamp<std::int64_t>(c.every_k, 1, static_cast<std::int64_t>(plan.layers.size())));
      break;
    case CheckpointPolicy::sqrt: apply_sqrt(plan); break;
    case CheckpointPolicy::budget: apply_budget(plan, step_budget); break;
  }
}

std::int64_t residual_grad_bytes(const Plan& plan) {
  return 2 * plan.run.train.micro_batch_size * plan.run.data.packing_length * plan.model.hidden_size *
         plan.run.activation_bytes();
}

StepPeak simulate_step(const Plan& plan) {
  StepPeak peak;
  const auto& layers = plan.layers;
  const std::int64_t inputs = input_bytes(plan.model, plan.run);
  // Residual-stream gradients are held through all of backward; booked with the temporaries.
  const std::int64_t dresid = residual_grad_bytes(plan);
  const std::int64_t head_loss = [&] {
    std::int64_t n = 0;
    for (const auto& s : plan.head.slots)
      if (s.loss) n += s.bytes;
    return n;
  }();
  const std::int64_t head_act = plan.head.total_bytes() - head_loss;

  // Records the moment if it is the largest so far. `rebuilt` and `scratch` name their owner.
  auto consider = [&](std::int64_t kept, std::int64_t rebuilt, std::int64_t head, std::int64_t loss,
                      std::int64_t scratch, bool backward, const std::string& phase, const std::string& layer) {
    const std::int64_t resid = backward ? dresid : 0;
    const std::int64_t total = inputs + kept + rebuilt + head + loss + scratch + resid;
    if (total <= peak.total) return;
    peak.total = total;
    peak.phase = phase;
    peak.parts.clear();
    auto part = [&](std::string name, Category c, std::int64_t bytes) {
      if (bytes > 0) peak.parts.push_back({std::move(name), c, bytes});
    };
    part("inputs (tokens, targets, positions, mask, cu_seqlens)", Category::activations, inputs);
    part("activations kept for backward", Category::activations, kept);
    part("activations of " + layer + (phase.rfind("forward", 0) == 0 ? " being computed" : " recomputed"),
         Category::activations, rebuilt);
    part("output head (final hidden state, norm)", Category::activations, head);
    part("logits and loss (fp32)", Category::loss, loss);
    part("residual-stream gradients (2 x [T, h])", Category::temporaries, resid);
    part("backward temporaries of " + layer, Category::temporaries, scratch);
  };

  // Forward: earlier layers' kept slots plus every slot of the running layer.
  std::int64_t kept_act = 0, kept_loss = 0;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const BlockProfile& p = plan.profiles[layers[i].profile];
    // All its slots and its output, which becomes the next block's input.
    consider(kept_act, p.total_bytes() + p.output_bytes, 0, kept_loss, 0, false, "forward of " + layers[i].name,
             layers[i].name);
    kept_act += layers[i].kept_bytes - layers[i].kept_loss_bytes;
    kept_loss += layers[i].kept_loss_bytes;
  }
  consider(kept_act, 0, head_act, kept_loss + head_loss, 0, false, "loss", "output head");

  // Backward, last layer first; the output head's backward runs before the last decoder layer
  // (after the MTP modules, which hang off the final hidden state).
  bool head_done = false;
  std::int64_t rebuilt = 0;
  for (std::size_t i = layers.size(); i-- > 0;) {
    const LayerPlan& l = layers[i];
    const BlockProfile& p = plan.profiles[l.profile];
    const bool mtp = l.name.rfind("mtp.", 0) == 0;
    if (!mtp && !head_done) {
      consider(kept_act, 0, head_act, kept_loss + head_loss, plan.head.backward_scratch, true,
               "backward of the output head", "output head");
      head_done = true;
    }
    if (l.mode == LayerMode::recompute) {
      if (ends_segment(plan, i))  // the whole segment's forward runs again now
        for (std::size_t j = l.segment; j <= i; ++j) rebuilt += layers[j].rebuilt_bytes;
    } else {
      rebuilt += l.rebuilt_bytes;
    }
    consider(kept_act, rebuilt, head_done ? 0 : head_act, kept_loss + (head_done ? 0 : head_loss),
             p.backward_scratch, true, "backward of " + l.name, l.name);
    kept_act -= l.kept_bytes - l.kept_loss_bytes;
    kept_loss -= l.kept_loss_bytes;
    rebuilt -= l.rebuilt_bytes;
  }
  return peak;
}

}  // namespace llmlab
