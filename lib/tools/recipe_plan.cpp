// Resolving machine-dependent settings before planning.
#include "tools/recipe_plan.hpp"

#include "ops/device_info.hpp"

namespace llmlab {

RunSettings resolved_run_settings(const Recipe& recipe, std::uint64_t memory_override) {
  RunSettings run = recipe;
  if (memory_override != 0) {
    run.hardware.memory = memory_override;
    run.hardware.memory_auto = false;
  } else if (run.hardware.memory_auto) {
    run.hardware.memory = device_memory_bytes(run.hardware.device);
  }
  return run;
}

Plan plan_recipe(const Recipe& recipe, std::uint64_t memory_override) {
  return make_plan(recipe.model, resolved_run_settings(recipe, memory_override));
}

}  // namespace llmlab
