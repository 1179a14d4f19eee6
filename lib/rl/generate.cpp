#include "rl/generate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "core/error.hpp"
#include "rl/rollout.hpp"

namespace llmlab {

std::vector<Completion> generate(Generator& g, const std::vector<std::vector<std::int32_t>>& prompts,
                                 const GenerationSettings& s) {
  validate(s.sampling);
  const std::int64_t k = s.samples_per_prompt, P = static_cast<std::int64_t>(prompts.size());
  if (k <= 0 || s.max_new_tokens < 0)
    throw Error(fmt::format("generation: {} samples per prompt and {} new tokens", k, s.max_new_tokens));
  if (P * k > g.cache().sequences())
    throw Error(fmt::format("generation: {} prompts x {} samples exceed the generator's {} sequences", P, k,
                            g.cache().sequences()));
  std::size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  if (s.max_new_tokens > 0 &&
      static_cast<std::int64_t>(longest) + s.max_new_tokens - 1 > g.cache().capacity())
    throw Error(fmt::format("generation: prompts of up to {} tokens plus {} new ones exceed the cache capacity {}",
                            longest, s.max_new_tokens, g.cache().capacity()));

  // Trajectory p k + j is sample j of prompt p, with its own seeded state.
  std::vector<Trajectory> rollouts;
  for (std::int64_t p = 0; p < P; ++p)
    for (Trajectory& t : fresh_samples(p, p, prompts[static_cast<std::size_t>(p)], k, s.seed)) {
      t.finished = s.max_new_tokens == 0;
      rollouts.push_back(std::move(t));
    }
  RolloutSettings rs;
  rs.sampling = s.sampling;
  rs.max_response_length = s.max_new_tokens;
  rs.stop_tokens = s.stop_tokens;
  rs.vocab_limit = s.vocab_limit;
  extend_rollouts(g, rollouts, rs, 0);

  std::vector<Completion> out;
  for (auto& t : rollouts) out.push_back({t.group, t.sample, std::move(t.response), t.stopped});
  return out;
}

}  // namespace llmlab
