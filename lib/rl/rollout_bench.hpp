// Rollout throughput: the KV-cached generator (one prefill, then one-token decode steps)
// against recomputing every sequence's whole prefix for each new token (what generation
// without a cache costs), on the same model, prompts and sampling seeds: the same work, token
// for token, so the ratio is the cache's speed-up. The two paths' logits agree to fp32
// rounding, so a sampled token can differ where a draw falls within that rounding of a
// probability boundary (likelier with sharp, trained policies); the share of sequences with
// identical tokens is reported.
#pragma once

#include <cstdint>

#include "recipe/recipe.hpp"

namespace llmlab {

struct RolloutBenchResult {
  std::int64_t sequences = 0, new_tokens = 0;  // per repeat: prompts x rollout.n, tokens generated
  double cached_seconds = 0, recompute_seconds = 0;  // medians over repeats
  double same_sequences = 0;                         // share of sequences with identical responses
};

// Random weights (seeded) unless `init_from` names a policy; prompts are the recipe task's
// first data.train_batch_size problems; responses run to data.max_response_length (stop
// tokens ignored, so both paths do the same work).
RolloutBenchResult bench_rollout(const Recipe& recipe, const std::string& init_from, int repeats);

}  // namespace llmlab
