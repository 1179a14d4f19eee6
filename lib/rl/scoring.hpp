// Rewards of one prompt group: 1 for a verified answer, 0 otherwise; k1.5's length reward
// added with its weight once past the warm-up; a response stopped as a loop loses
// rollout.repeat_penalty.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/tokenizer/tokenizer.hpp"
#include "rl/problem.hpp"
#include "rl/rollout.hpp"
#include "rl/verifier.hpp"

namespace llmlab {

struct RewardSettings {
  bool length_penalty = false;  // applies this iteration (enabled and past the warm-up)
  double length_weight = 1.0;
  double repeat_penalty = 0;
  std::vector<std::int32_t> stop_tokens;  // not part of the text the verifier reads
};

struct GroupScore {
  std::vector<double> rewards, length_rewards;
  std::vector<bool> correct;
};

// The response as text for the verifier: its tokens without a final stop token.
std::string response_text(std::span<const std::int32_t> response, const Tokenizer& tokenizer,
                          const std::vector<std::int32_t>& stop_tokens);

GroupScore score_group(const std::vector<const Trajectory*>& samples, const Problem& problem, const Verifier& verifier,
                       const Tokenizer& tokenizer, const RewardSettings& s);

}  // namespace llmlab
