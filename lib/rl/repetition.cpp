// Detecting a generation that ends in a loop; see repetition.hpp.
#include "rl/repetition.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"

namespace llmlab {

bool ends_in_repetition(std::span<const std::int32_t> tokens, const RepetitionSettings& s) {
  if (s.max_period <= 0) return false;
  if (s.min_repeats < 2)
    throw Error(fmt::format("repetition: min_repeats {} must be >= 2 (one copy is no repetition)", s.min_repeats));
  if (s.min_tokens < 0) throw Error(fmt::format("repetition: min_tokens {} is negative", s.min_tokens));
  const auto n = static_cast<std::int64_t>(tokens.size());
  for (std::int64_t p = 1; p <= s.max_period; ++p) {
    // Whole copies needed: min_repeats, and enough to cover min_tokens.
    const std::int64_t copies = std::max(s.min_repeats, (s.min_tokens + p - 1) / p);
    const std::int64_t need = copies * p;
    if (need > n) continue;  // longer periods need more, but a smaller copies count may still fit
    // The last `need` tokens are `copies` copies of one block iff each equals the token p later.
    bool periodic = true;
    for (std::int64_t i = n - need; i + p < n && periodic; ++i)
      periodic = tokens[static_cast<std::size_t>(i)] == tokens[static_cast<std::size_t>(i + p)];
    if (periodic) return true;
  }
  return false;
}

}  // namespace llmlab
