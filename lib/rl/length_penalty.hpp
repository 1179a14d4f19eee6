// Kimi k1.5's length reward (arXiv 2501.12599 §2.3.3): among the k responses to one prompt the
// shorter ones earn up to +0.5 and the longer ones down to -0.5, so the policy learns to stop
// overthinking; a wrong answer is never rewarded for being short.
#pragma once

#include <cstdint>
#include <vector>

namespace llmlab {

// lambda_j = 0.5 - (len_j - min_len) / (max_len - min_len); a correct response gets lambda_j,
// a wrong one min(0, lambda_j). All 0 when every length is equal (a single sample included).
// Throws Error when lengths and correct differ in size.
std::vector<double> length_penalty(const std::vector<std::int64_t>& lengths, const std::vector<bool>& correct);

}  // namespace llmlab
