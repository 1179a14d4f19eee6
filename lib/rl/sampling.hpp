// Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus), in
// Hugging Face's order (temperature, then top-k, then top-p). Randomness is the project's
// splitmix64 with one state per sequence, so a seed gives the same tokens on every platform
// and whatever else is in the batch. Probabilities are computed in float64 on the host.
#pragma once

#include <cstdint>
#include <vector>

namespace llmlab {

struct SamplingSettings {
  double temperature = 1.0;  // <= 0: greedy (argmax, the lowest id on ties), no draw
  std::int64_t top_k = 0;    // keep the k most likely tokens; 0: all
  double top_p = 1.0;        // keep the smallest most-likely prefix with probability >= top_p; 1: all
};

// Throws Error for a negative top_k or a top_p outside (0, 1].
void validate(const SamplingSettings& s);

struct Candidate {
  std::int32_t token = 0;
  double prob = 0;  // renormalised over the kept tokens
};

// The distribution sample_token draws from: the kept tokens with probabilities summing to 1,
// most likely first (ties: lower id first) when top-k or top-p prune, else in id order.
std::vector<Candidate> sampling_support(const float* logits, std::int64_t V, const SamplingSettings& s);

// One token from logits [V]; advances `state` by one splitmix64 draw unless greedy.
std::int32_t sample_token(const float* logits, std::int64_t V, const SamplingSettings& s, std::uint64_t& state);

std::int32_t argmax(const float* logits, std::int64_t V);

// The random state of sample `sample` of prompt `prompt` under run seed `seed`: independent of
// batch composition and order, so a sequence's tokens depend only on its own seed and logits.
std::uint64_t sequence_seed(std::uint64_t seed, std::uint64_t prompt, std::uint64_t sample);

}  // namespace llmlab
