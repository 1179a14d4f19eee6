#include "rl/generate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "core/error.hpp"

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

  // Sequence p k + j holds sample j of prompt p.
  std::vector<Completion> out;
  std::vector<std::uint64_t> state;
  std::vector<std::int32_t> firsts, active;  // the first sample of each prompt; sequences still generating
  for (std::int64_t p = 0; p < P; ++p) {
    firsts.push_back(static_cast<std::int32_t>(p * k));
    for (std::int64_t j = 0; j < k; ++j) {
      out.push_back({p, j, {}, false});
      state.push_back(sequence_seed(s.seed, static_cast<std::uint64_t>(p), static_cast<std::uint64_t>(j)));
      active.push_back(static_cast<std::int32_t>(p * k + j));
    }
  }
  if (s.max_new_tokens == 0 || out.empty()) return out;

  // One prefill per prompt; its other samples start from a copy of its cache and logits.
  const std::int64_t V = g.spec().vocab_size;
  std::vector<float> prompt_logits, logits(static_cast<std::size_t>(P * k * V));
  g.prefill(firsts, prompts, prompt_logits);
  for (std::int64_t p = 0; p < P; ++p)
    for (std::int64_t j = 0; j < k; ++j) {
      g.copy_sequence(static_cast<std::int32_t>(p * k), static_cast<std::int32_t>(p * k + j));
      std::copy_n(prompt_logits.begin() + p * V, V, logits.begin() + (p * k + j) * V);
    }
  while (!active.empty()) {
    std::vector<std::int32_t> still, fed;
    for (std::size_t i = 0; i < active.size(); ++i) {
      const auto seq = static_cast<std::size_t>(active[i]);
      const std::int32_t token =
          sample_token(logits.data() + static_cast<std::int64_t>(i) * V, V, s.sampling, state[seq]);
      Completion& c = out[seq];
      c.tokens.push_back(token);
      c.stopped = std::find(s.stop_tokens.begin(), s.stop_tokens.end(), token) != s.stop_tokens.end();
      if (c.stopped || static_cast<std::int64_t>(c.tokens.size()) >= s.max_new_tokens) continue;
      still.push_back(active[i]);
      fed.push_back(token);
    }
    active = std::move(still);
    if (!active.empty()) g.decode(active, fed, logits);
  }
  return out;
}

}  // namespace llmlab
