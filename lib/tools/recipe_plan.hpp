// From a bound recipe to its Plan, resolving what only the machine knows (hardware.memory:
// auto). Shared by memory-plan's single plan, --fit and --sweep (and train, later).
#pragma once

#include <cstdint>

#include "plan/plan.hpp"
#include "recipe/recipe.hpp"

namespace llmlab {

// `memory_override` (non-zero) replaces hardware.memory, as --fit SIZE does.
RunSettings resolved_run_settings(const Recipe& recipe, std::uint64_t memory_override);
Plan plan_recipe(const Recipe& recipe, std::uint64_t memory_override = 0);

}  // namespace llmlab
