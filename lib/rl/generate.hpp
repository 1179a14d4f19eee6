// Batched rollouts: k samples of each prompt generated together with the KV-cached
// Generator (one prefill per prompt, copied to its k sequences), then one decode step per
// token for every unfinished sequence, until a stop token or the response-length cap. Each
// sequence draws from its own seeded state (sequence_seed), so its tokens do not depend on
// what else is in the batch beyond fp32 rounding of the logits.
#pragma once

#include <cstdint>
#include <vector>

#include "model/generator.hpp"
#include "rl/sampling.hpp"

namespace llmlab {

struct GenerationSettings {
  SamplingSettings sampling;
  std::int64_t max_new_tokens = 64;      // the response-length cap
  std::vector<std::int32_t> stop_tokens;  // sampling one ends the response (it is kept in it)
  std::int64_t samples_per_prompt = 1;    // k
  std::uint64_t seed = 0;
  std::int64_t vocab_limit = 0;           // ids at or above it are never sampled; 0 = all
};

struct Completion {
  std::int64_t prompt = 0, sample = 0;
  std::vector<std::int32_t> tokens;  // the response only
  bool stopped = false;              // ended by a stop token rather than the cap
};

// Completions in prompt-major order (prompt 0's k samples first). The generator needs
// prompts x k sequences and capacity >= longest prompt + max_new_tokens - 1 (the last
// sampled token is never fed back).
std::vector<Completion> generate(Generator& g, const std::vector<std::vector<std::int32_t>>& prompts,
                                 const GenerationSettings& s);

}  // namespace llmlab
