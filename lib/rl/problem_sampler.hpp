// Which problems each RL iteration trains on (Kimi k1.5, arXiv 2501.12599 §2.3.4): uniformly,
// by a curriculum that admits harder problems as training goes on, or prioritised towards the
// problems the policy still fails (weight 1 - success rate). Randomness is the project's
// splitmix64, so a seed gives the same problems on every platform, and state()/restore()
// carry the sampler across a checkpoint bit-exactly.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmlab {

enum class SamplingStrategy { uniform, curriculum, prioritized };

const char* sampling_strategy_name(SamplingStrategy strategy);  // "uniform" | "curriculum" | "prioritized"

struct ProblemSamplerSettings {
  SamplingStrategy strategy = SamplingStrategy::uniform;
  std::int64_t curriculum_iterations = 100;  // curriculum: iterations over which the admitted difficulty rises from
                                             // the easiest to the hardest problem; <= 0 admits all at once
  double min_weight = 0.02;                  // prioritized: weight floor so solved problems still appear now and then
};

class ProblemSampler {
 public:
  // difficulty[i]: any finite scale, larger is harder (only curriculum reads it).
  // Throws Error for a non-finite difficulty or min_weight outside (0, 1].
  ProblemSampler(std::vector<double> difficulty, ProblemSamplerSettings s, std::uint64_t seed);

  // `count` distinct problem indices for `iteration` (0-based), drawn without replacement.
  //  uniform:     uniformly at random.
  //  curriculum:  uniformly among problems with difficulty <= admitted_difficulty(iteration); when fewer
  //               than count are admitted, the easiest count (ties: lower index).
  //  prioritized: weight_i = max(min_weight, 1 - success_i), sequentially: draw proportional to the
  //               remaining weights, remove, repeat.
  // Throws Error when count is negative or exceeds the number of problems, or iteration is negative.
  std::vector<std::int64_t> draw(std::int64_t count, std::int64_t iteration);

  // Adds `correct` of `total` graded samples of `problem` to its success record.
  void record(std::int64_t problem, std::int64_t correct, std::int64_t total);

  double success_rate(std::int64_t problem) const;  // correct / total so far; 0 when unseen

  // Curriculum threshold: min difficulty at iteration 0 rising linearly to max difficulty at
  // curriculum_iterations and after. Other strategies: max difficulty (0 with no problems).
  double admitted_difficulty(std::int64_t iteration) const;

  std::int64_t problems() const { return static_cast<std::int64_t>(difficulty_.size()); }

  // Everything needed to continue bit-exactly: the random state and per-problem counts.
  nlohmann::json state() const;
  // Throws Error on a malformed state or one saved for another number of problems.
  void restore(const nlohmann::json& state);

 private:
  double weight(std::size_t problem) const;
  void check_problem(std::int64_t problem) const;

  std::vector<double> difficulty_;
  ProblemSamplerSettings s_;
  std::uint64_t rng_;
  std::vector<std::int64_t> correct_, total_;  // per problem
};

}  // namespace llmlab
