// Problem selection for RL iterations: uniform, curriculum and prioritised; see problem_sampler.hpp.
#include "rl/problem_sampler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "core/error.hpp"
#include "core/random.hpp"

namespace llmlab {
namespace {

// A uniform double in [0, 1) from the top 53 bits of one draw.
double uniform01(std::uint64_t& state) { return static_cast<double>(splitmix64(state) >> 11) * 0x1p-53; }

// `count` distinct entries of `pool`, uniformly, by a partial Fisher-Yates shuffle.
std::vector<std::int64_t> pick_uniform(std::vector<std::int64_t> pool, std::size_t count, std::uint64_t& state) {
  for (std::size_t i = 0; i < count; ++i) {
    const auto j = i + static_cast<std::size_t>(uniform_below(state, pool.size() - i));
    std::swap(pool[i], pool[j]);
  }
  pool.resize(count);
  return pool;
}

}  // namespace

const char* sampling_strategy_name(SamplingStrategy strategy) {
  switch (strategy) {
    case SamplingStrategy::uniform: return "uniform";
    case SamplingStrategy::curriculum: return "curriculum";
    case SamplingStrategy::prioritized: return "prioritized";
  }
  return "?";
}

ProblemSampler::ProblemSampler(std::vector<double> difficulty, ProblemSamplerSettings s, std::uint64_t seed)
    : difficulty_(std::move(difficulty)),
      s_(s),
      rng_(seed),
      correct_(difficulty_.size(), 0),
      total_(difficulty_.size(), 0) {
  for (std::size_t i = 0; i < difficulty_.size(); ++i)
    if (!std::isfinite(difficulty_[i]))
      throw Error(fmt::format("problem sampler: difficulty of problem {} is {}", i, difficulty_[i]));
  if (!(s_.min_weight > 0 && s_.min_weight <= 1))
    throw Error(fmt::format("problem sampler: min_weight {} is outside (0, 1]", s_.min_weight));
}

void ProblemSampler::check_problem(std::int64_t problem) const {
  if (problem < 0 || problem >= problems())
    throw Error(fmt::format("problem sampler: problem {} is outside [0, {})", problem, problems()));
}

double ProblemSampler::weight(std::size_t problem) const {
  return std::max(s_.min_weight, 1 - success_rate(static_cast<std::int64_t>(problem)));
}

double ProblemSampler::admitted_difficulty(std::int64_t iteration) const {
  if (difficulty_.empty()) return 0;
  const auto [lo, hi] = std::minmax_element(difficulty_.begin(), difficulty_.end());
  if (s_.strategy != SamplingStrategy::curriculum || s_.curriculum_iterations <= 0 ||
      iteration >= s_.curriculum_iterations)
    return *hi;  // exactly the max, so rounding never shuts out the hardest problem
  const double progress =
      static_cast<double>(std::max<std::int64_t>(iteration, 0)) / static_cast<double>(s_.curriculum_iterations);
  return *lo + (*hi - *lo) * progress;
}

std::vector<std::int64_t> ProblemSampler::draw(std::int64_t count, std::int64_t iteration) {
  if (count < 0 || count > problems())
    throw Error(fmt::format("problem sampler: cannot draw {} distinct problems of {}", count, problems()));
  if (iteration < 0) throw Error(fmt::format("problem sampler: iteration {} is negative", iteration));
  const auto n = difficulty_.size();
  const auto c = static_cast<std::size_t>(count);
  std::vector<std::int64_t> all(n);
  std::iota(all.begin(), all.end(), std::int64_t{0});

  switch (s_.strategy) {
    case SamplingStrategy::uniform: return pick_uniform(std::move(all), c, rng_);

    case SamplingStrategy::curriculum: {
      const double threshold = admitted_difficulty(iteration);
      std::vector<std::int64_t> admitted;
      for (const std::int64_t i : all)
        if (difficulty_[static_cast<std::size_t>(i)] <= threshold) admitted.push_back(i);
      if (admitted.size() < c) {
        std::stable_sort(all.begin(), all.end(), [&](std::int64_t a, std::int64_t b) {
          return difficulty_[static_cast<std::size_t>(a)] < difficulty_[static_cast<std::size_t>(b)];
        });
        all.resize(c);
        std::sort(all.begin(), all.end());
        admitted = std::move(all);
      }
      return pick_uniform(std::move(admitted), c, rng_);
    }

    case SamplingStrategy::prioritized: {
      std::vector<double> w(n);
      for (std::size_t i = 0; i < n; ++i) w[i] = weight(i);
      std::vector<std::int64_t> out;
      out.reserve(c);
      for (std::size_t pick = 0; pick < c; ++pick) {
        // Summed afresh each pick rather than decremented, so rounding never accumulates.
        double total = 0;
        for (const double e : w) total += e;
        const double u = uniform01(rng_) * total;
        std::size_t chosen = n;
        double cum = 0;
        for (std::size_t i = 0; i < n; ++i) {
          if (w[i] <= 0) continue;  // already drawn
          chosen = i;               // the last remaining one catches u rounding past the total
          cum += w[i];
          if (u < cum) break;
        }
        out.push_back(static_cast<std::int64_t>(chosen));
        w[chosen] = 0;
      }
      return out;
    }
  }
  throw Error("problem sampler: unknown strategy");
}

void ProblemSampler::record(std::int64_t problem, std::int64_t correct, std::int64_t total) {
  check_problem(problem);
  if (total < 0 || correct < 0 || correct > total)
    throw Error(fmt::format("problem sampler: problem {}: {} correct of {} samples", problem, correct, total));
  correct_[static_cast<std::size_t>(problem)] += correct;
  total_[static_cast<std::size_t>(problem)] += total;
}

double ProblemSampler::success_rate(std::int64_t problem) const {
  check_problem(problem);
  const auto i = static_cast<std::size_t>(problem);
  return total_[i] > 0 ? static_cast<double>(correct_[i]) / static_cast<double>(total_[i]) : 0.0;
}

nlohmann::json ProblemSampler::state() const {
  // The random state as a decimal string: JSON readers other than nlohmann may hold numbers
  // as doubles, which would lose the low bits of a 64-bit state.
  return {{"problems", problems()},
          {"strategy", sampling_strategy_name(s_.strategy)},
          {"rng", std::to_string(rng_)},
          {"correct", correct_},
          {"total", total_}};
}

void ProblemSampler::restore(const nlohmann::json& state) {
  std::uint64_t rng = 0;
  std::vector<std::int64_t> correct, total;
  try {
    const auto n = state.at("problems").get<std::int64_t>();
    if (n != problems())
      throw Error(fmt::format("problem sampler: state is for {} problems, this sampler has {}", n, problems()));
    const std::string r = state.at("rng").get<std::string>();
    // std::stoull would accept a sign or blanks; a saved state is plain digits.
    if (r.empty() || r.find_first_not_of("0123456789") != std::string::npos)
      throw Error(fmt::format("problem sampler: state rng '{}' is not a decimal number", r));
    rng = std::stoull(r);
    correct = state.at("correct").get<std::vector<std::int64_t>>();
    total = state.at("total").get<std::vector<std::int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("problem sampler: malformed state: {}", e.what()));
  } catch (const std::out_of_range& e) {  // std::stoull: more than 64 bits
    throw Error(fmt::format("problem sampler: malformed state rng: {}", e.what()));
  }
  if (correct.size() != difficulty_.size() || total.size() != difficulty_.size())
    throw Error(fmt::format("problem sampler: state has {} / {} counts for {} problems", correct.size(), total.size(),
                            difficulty_.size()));
  for (std::size_t i = 0; i < correct.size(); ++i)
    if (total[i] < 0 || correct[i] < 0 || correct[i] > total[i])
      throw Error(fmt::format("problem sampler: state: problem {}: {} correct of {}", i, correct[i], total[i]));
  rng_ = rng;
  correct_ = std::move(correct);
  total_ = std::move(total);
}

}  // namespace llmlab
