// Early stop for degenerate generations (Kimi k1.5's partial rollouts detect repeated content,
// arXiv 2501.12599 §2.6.2): a sample stuck in a loop of a few tokens would otherwise burn its
// whole length budget. Checked after every sampled token.
#pragma once

#include <cstdint>
#include <span>

namespace llmlab {

struct RepetitionSettings {
  std::int64_t max_period = 0;   // longest loop looked for, in tokens; 0 = off
  std::int64_t min_repeats = 4;  // back-to-back copies of the block needed; >= 2
  std::int64_t min_tokens = 16;  // and the copies must cover at least this many tokens
};

// True when the sequence ends with one block of p tokens (1 <= p <= max_period) repeated at
// least min_repeats times back to back, the whole copies covering at least min_tokens tokens.
// Cost O(sum over p of the tail checked) <= O(max_period * (max_period * min_repeats + min_tokens)).
// Throws Error for min_repeats < 2 or min_tokens < 0 when on.
bool ends_in_repetition(std::span<const std::int32_t> tokens, const RepetitionSettings& s);

}  // namespace llmlab
