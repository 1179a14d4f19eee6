// Kimi k1.5's length reward over the responses to one prompt; see length_penalty.hpp.
#include "rl/length_penalty.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"

namespace llmlab {

std::vector<double> length_penalty(const std::vector<std::int64_t>& lengths, const std::vector<bool>& correct) {
  if (lengths.size() != correct.size())
    throw Error(fmt::format("length_penalty: {} lengths but {} correctness flags", lengths.size(), correct.size()));
  std::vector<double> out(lengths.size(), 0.0);
  if (lengths.empty()) return out;
  const auto [lo, hi] = std::minmax_element(lengths.begin(), lengths.end());
  const std::int64_t min_len = *lo, max_len = *hi;
  if (min_len == max_len) return out;  // no length signal: nothing to prefer
  const double range = static_cast<double>(max_len - min_len);
  for (std::size_t j = 0; j < lengths.size(); ++j) {
    const double lambda = 0.5 - static_cast<double>(lengths[j] - min_len) / range;
    out[j] = correct[j] ? lambda : std::min(0.0, lambda);
  }
  return out;
}

}  // namespace llmlab
