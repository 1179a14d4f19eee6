// Kimi k1.5's long2short tools: averaging the weights of two policies (a long-CoT and a
// short-CoT model), and shortest-correct rejection sampling to build an SFT set of short
// correct answers from a policy's own samples.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "recipe/recipe.hpp"

namespace llmlab {

// out = alpha * a + (1 - alpha) * b for every tensor (same names and shapes; written F32),
// into output_dir/model.safetensors with a's config.json beside it when it has one. `a` and
// `b` are safetensors files or checkpoint directories. Returns the tensors merged.
std::int64_t merge_weights(const std::string& a, const std::string& b, double alpha, const std::string& output_dir);

struct SftSetStats {
  std::int64_t problems = 0, kept = 0;  // problems sampled; those with a correct sample
  double kept_length_mean = 0, sampled_length_mean = 0;  // response tokens
};

// Samples rollout.n responses per problem of the recipe's task from the policy `init_from`
// and writes, for each problem with a correct one, the shortest correct response as a
// prompt/completion record (pack-data's SFT format) to `output` (JSONL, atomically).
SftSetStats write_shortest_correct(const Recipe& recipe, const std::string& init_from, const std::string& output,
                                   std::int64_t max_problems);

}  // namespace llmlab
