// Trajectories and their generation: each sampled response continues from where it stopped
// (its tokens and its own random state are kept), so a rollout can be cut into segments
// across iterations (k1.5's partial rollouts) and still produce, for a fixed policy, the
// tokens an uninterrupted rollout produces.
#pragma once

#include <cstdint>
#include <vector>

#include "model/generator.hpp"
#include "rl/repetition.hpp"
#include "rl/sampling.hpp"

namespace llmlab {

struct Trajectory {
  std::int64_t problem = 0;  // index into the problem set
  std::int64_t group = 0;    // the prompt draw it belongs to: its rollout.n samples share it
  std::int64_t sample = 0;   // which of them
  std::vector<std::int32_t> prompt, response;
  std::vector<std::int32_t> produced_at;  // per response token: the iteration that sampled it
  std::uint64_t rng = 0;                  // sampler state to continue from
  bool finished = false;
  bool stopped = false;   // ended by a stop token (kept as the response's last token)
  bool repeated = false;  // ended early as a degenerate loop
  std::int64_t segments = 0;  // generation calls that extended it (1 = never interrupted)
};

// rollout.n fresh samples of a prompt: group `group`, sample j seeded with
// sequence_seed(seed, group, j), so a sample's tokens depend on nothing else.
std::vector<Trajectory> fresh_samples(std::int64_t problem, std::int64_t group, const std::vector<std::int32_t>& prompt,
                                      std::int64_t n, std::uint64_t seed);

struct RolloutSettings {
  SamplingSettings sampling;
  std::int64_t max_response_length = 64;
  std::int64_t segment_length = 0;  // tokens per call and trajectory; 0 = until finished
  std::vector<std::int32_t> stop_tokens;
  RepetitionSettings repetition;
  // Ids at or above this are never sampled (a vocabulary padded past the tokenizer's, e.g.
  // 265 byte-level tokens in 320 rows); 0 = the model's whole vocabulary.
  std::int64_t vocab_limit = 0;
};

// Extends every unfinished trajectory by up to segment_length tokens, until a stop token, the
// response cap or a repetition ends it. Contexts are prefilled together (prompt plus the
// response so far, packed varlen); trajectories of one group that have no response yet share
// one prefill. Tokens are tagged with `iteration`. The generator needs as many sequences as
// unfinished trajectories and capacity for max_prompt + max_response_length - 1 tokens.
// Returns the number of tokens generated.
std::int64_t extend_rollouts(Generator& g, std::vector<Trajectory>& trajectories, const RolloutSettings& s,
                             std::int64_t iteration);

}  // namespace llmlab
