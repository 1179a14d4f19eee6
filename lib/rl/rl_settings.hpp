// rl-train's settings: the recipe keys of the rollout, the task and its verifier, the policy
// loss, the length penalty, problem sampling and partial rollouts (lib/recipe/schema_rl.cpp
// binds them; names follow verl where it has one: data.max_prompt_length, rollout.n, ...).
#pragma once

#include <cstdint>
#include <string>

#include "rl/builtin_tasks.hpp"
#include "rl/policy_loss.hpp"
#include "rl/problem_sampler.hpp"
#include "rl/repetition.hpp"
#include "rl/sampling.hpp"
#include "rl/verifier.hpp"

namespace llmlab {

enum class TaskSource { running_sum, arithmetic, file };

// k1.5's length reward, added to the correctness reward with `weight` after a warm-up.
struct LengthPenaltySettings {
  bool enabled = false;
  double weight = 1.0;
  std::int64_t warmup_iterations = 0;  // iterations trained without it (k1.5 warms up first)
};

// k1.5's partial rollouts: each trajectory generates at most segment_length tokens per
// iteration; unfinished ones wait in the replay buffer and continue in the next iteration.
struct PartialRolloutSettings {
  bool enabled = false;
  std::int64_t segment_length = 64;
};

struct RlSettings {
  std::int64_t max_prompt_length = 64;     // data.max_prompt_length: longer prompts are refused at load
  std::int64_t max_response_length = 128;  // data.max_response_length: the response cap
  std::int64_t train_batch_size = 16;      // data.train_batch_size: prompt groups per iteration
  std::int64_t n = 8;                      // rollout.n: samples per prompt
  SamplingSettings sampling;               // rollout.temperature, top_k, top_p
  RepetitionSettings repetition;           // rollout.repeat_*
  double repeat_penalty = 0;               // subtracted from the reward of a response stopped as a loop
  TaskSource task = TaskSource::running_sum;
  std::string task_file;                   // task.file (JSONL) when task.name = file
  BuiltinTaskSettings builtin;             // task.count, difficulty range, seed, style
  VerifierSettings verifier;               // task.verifier, answer_regex, tolerance
  PolicyLossSettings loss;                 // algorithm.loss, tau, clip_eps
  std::int64_t gradient_steps = 1;         // algorithm.gradient_steps: optimizer steps per iteration
  LengthPenaltySettings length_penalty;
  ProblemSamplerSettings sampler;          // sampling.*
  PartialRolloutSettings partial;          // partial_rollout.*
};

const char* task_source_name(TaskSource t);

}  // namespace llmlab
