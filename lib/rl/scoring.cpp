#include "rl/scoring.hpp"

#include <algorithm>
#include <span>

#include "rl/length_penalty.hpp"

namespace llmlab {

std::string response_text(std::span<const std::int32_t> response, const Tokenizer& tokenizer,
                          const std::vector<std::int32_t>& stop_tokens) {
  std::span<const std::int32_t> ids = response;
  if (!ids.empty() && std::find(stop_tokens.begin(), stop_tokens.end(), ids.back()) != stop_tokens.end())
    ids = ids.first(ids.size() - 1);
  return tokenizer.decode(ids);
}

GroupScore score_group(const std::vector<const Trajectory*>& samples, const Problem& problem, const Verifier& verifier,
                       const Tokenizer& tokenizer, const RewardSettings& s) {
  GroupScore g;
  std::vector<std::int64_t> lengths;
  for (const Trajectory* t : samples) {
    g.correct.push_back(verifier(response_text(t->response, tokenizer, s.stop_tokens), problem.answer).correct);
    lengths.push_back(static_cast<std::int64_t>(t->response.size()));
  }
  g.length_rewards = length_penalty(lengths, g.correct);
  for (std::size_t j = 0; j < samples.size(); ++j) {
    double r = g.correct[j] ? 1.0 : 0.0;
    if (s.length_penalty) r += s.length_weight * g.length_rewards[j];
    if (samples[j]->repeated) r -= s.repeat_penalty;
    g.rewards.push_back(r);
  }
  return g;
}

}  // namespace llmlab
