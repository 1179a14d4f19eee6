// rl-train's iteration loop (Kimi k1.5, arXiv 2501.12599): draw prompt groups, roll them out
// with the KV-cached generator (partial rollouts keep unfinished ones for the next
// iteration), score them with the verifier and the length reward, then take
// algorithm.gradient_steps optimizer steps of the policy loss with the reference policy reset
// to the current one. Reuses train's model, planner, ZeRO engine, AdamW and checkpoints.
#pragma once

#include <ostream>
#include <string>

#include "dist/launch.hpp"
#include "recipe/recipe.hpp"

namespace llmlab {

struct RlOptions {
  bool json = false;      // one JSON object per iteration on stdout, then {"summary": ...}
  bool resume = false;    // continue from the latest checkpoint in output.dir
  std::string init_from;  // the policy to start from: safetensors or a train checkpoint directory
  bool quiet = false;
  LaunchInfo launch;
};

// rl-train's derived settings: data.packing_length = max prompt + max response unless set
// (then it must hold them), the built-in tasks' verifier unless task.verifier is set.
// Throws InputError naming the key for contradictions.
Recipe resolve_rl_recipe(Recipe recipe);

// Returns the exit code: 0 done, 130 interrupted (checkpoint saved).
int run_rl_training(const Recipe& recipe, const RlOptions& options, std::ostream& out, std::ostream& err);

}  // namespace llmlab
