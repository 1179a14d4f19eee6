// Presenting a Plan: the terminal report memory-plan prints (and train will print beside its
// measurements) and the JSON object scripts read.
#pragma once

#include <nlohmann/json.hpp>

#include <ostream>

#include "plan/plan.hpp"

namespace llmlab {

struct ReportOptions {
  bool slots = false;  // also list every activation slot of each distinct block
};

void print_plan(const Plan& plan, std::ostream& out, const ReportOptions& options = {});

// Keys: parameters, model{...}, settings{...}, per_rank{params_bytes, grads_bytes,
// optimizer_bytes, model_states_bytes, activations_bytes, loss_bytes, temporaries_bytes,
// comm_bytes, overhead_bytes, reserve_bytes, peak_bytes, peak_phase}, memory_limit_bytes, fits,
// breakdown[{name, category, bytes}], buffers[...], layers[...], compute{...}.
nlohmann::ordered_json plan_json(const Plan& plan);

}  // namespace llmlab
