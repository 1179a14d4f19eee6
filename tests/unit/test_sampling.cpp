// Token sampling (lib/rl/sampling): top-k and top-p keep exactly the right tokens of hand-made
// distributions, temperature 0 is greedy, temperature reshapes the distribution, a seed gives
// the same tokens, and sampled frequencies match the distribution.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "rl/sampling.hpp"

using namespace llmlab;

namespace {

std::vector<float> log_probs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double e : p) l.push_back(static_cast<float>(std::log(e)));
  return l;
}

std::vector<std::int32_t> tokens_of(const std::vector<Candidate>& c) {
  std::vector<std::int32_t> t;
  for (const auto& e : c) t.push_back(e.token);
  return t;
}

SamplingSettings settings(double temperature, std::int64_t top_k, double top_p) {
  SamplingSettings s;
  s.temperature = temperature;
  s.top_k = top_k;
  s.top_p = top_p;
  return s;
}

using Tokens = std::vector<std::int32_t>;

}  // namespace

TEST_CASE("sampling: top-k keeps exactly the k most likely tokens, renormalised") {
  const std::vector<float> logits{0.1f, 2.0f, -1.0f, 1.5f, 0.5f, 1.5f};
  CHECK(tokens_of(sampling_support(logits.data(), 6, settings(1, 1, 1))) == Tokens{1});
  CHECK(tokens_of(sampling_support(logits.data(), 6, settings(1, 2, 1))) == Tokens{1, 3});  // tie 3/5: lower id
  CHECK(tokens_of(sampling_support(logits.data(), 6, settings(1, 3, 1))) == Tokens{1, 3, 5});
  CHECK(sampling_support(logits.data(), 6, settings(1, 6, 1)).size() == 6);
  CHECK(sampling_support(logits.data(), 6, settings(1, 100, 1)).size() == 6);  // k > V keeps all
  const auto two = sampling_support(logits.data(), 6, settings(1, 2, 1));
  const double e = std::exp(0.5);  // p(1) / p(3)
  CHECK(two[0].prob == doctest::Approx(e / (1 + e)).epsilon(1e-12));
  CHECK(two[1].prob == doctest::Approx(1 / (1 + e)).epsilon(1e-12));
}

TEST_CASE("sampling: top-p keeps the smallest most-likely set reaching p") {
  // Shuffled so that likelihood order is not id order.
  const std::vector<float> logits = log_probs({0.15, 0.5, 0.05, 0.3});
  CHECK(tokens_of(sampling_support(logits.data(), 4, settings(1, 0, 0.01))) == Tokens{1});  // always at least one
  CHECK(tokens_of(sampling_support(logits.data(), 4, settings(1, 0, 0.4))) == Tokens{1});
  CHECK(tokens_of(sampling_support(logits.data(), 4, settings(1, 0, 0.75))) == Tokens{1, 3});
  CHECK(tokens_of(sampling_support(logits.data(), 4, settings(1, 0, 0.85))) == Tokens{1, 3, 0});
  CHECK(tokens_of(sampling_support(logits.data(), 4, settings(1, 0, 0.97))) == Tokens{1, 3, 0, 2});
  CHECK(sampling_support(logits.data(), 4, settings(1, 0, 1.0)).size() == 4);
  const auto kept = sampling_support(logits.data(), 4, settings(1, 0, 0.75));
  CHECK(kept[0].prob == doctest::Approx(0.5 / 0.8).epsilon(1e-6));  // float logits: 1e-7 relative
  // After top-k = 3 the mass is {0.5, 0.3, 0.15} / 0.95: 0.842 before the third, below 0.9.
  CHECK(tokens_of(sampling_support(logits.data(), 4, settings(1, 3, 0.9))) == Tokens{1, 3, 0});
  CHECK(tokens_of(sampling_support(logits.data(), 4, settings(1, 3, 0.8))) == Tokens{1, 3});
}

TEST_CASE("sampling: temperature 0 is greedy, temperature reshapes the distribution") {
  const std::vector<float> logits{0.3f, 1.0f, 1.0f, -2.0f};
  std::uint64_t state = 42;
  for (int i = 0; i < 10; ++i) CHECK(sample_token(logits.data(), 4, settings(0, 0, 1), state) == 1);  // first max
  CHECK(state == 42);  // greedy draws nothing
  CHECK(argmax(logits.data(), 4) == 1);
  const std::vector<float> two = log_probs({0.2, 0.8});
  const auto hot = sampling_support(two.data(), 2, settings(2, 0, 1));  // p^(1/2), renormalised
  CHECK(hot[0].prob == doctest::Approx(std::sqrt(0.2) / (std::sqrt(0.2) + std::sqrt(0.8))).epsilon(1e-6));
  const auto cold = sampling_support(two.data(), 2, settings(0.5, 0, 1));  // p^2
  CHECK(cold[1].prob == doctest::Approx(0.64 / 0.68).epsilon(1e-6));
}

TEST_CASE("sampling: a seed always gives the same tokens") {
  const std::vector<float> logits = log_probs({0.1, 0.2, 0.3, 0.25, 0.15});
  auto draw = [&](std::uint64_t seed) {
    std::uint64_t state = seed;
    Tokens t;
    for (int i = 0; i < 200; ++i) t.push_back(sample_token(logits.data(), 5, settings(1, 0, 1), state));
    return t;
  };
  CHECK(draw(7) == draw(7));
  CHECK(draw(7) != draw(8));
  // Per-sequence seeds: distinct for every (prompt, sample) and reproducible.
  CHECK(sequence_seed(1, 0, 0) == sequence_seed(1, 0, 0));
  CHECK(sequence_seed(1, 0, 1) != sequence_seed(1, 1, 0));
  CHECK(sequence_seed(1, 0, 0) != sequence_seed(2, 0, 0));
}

TEST_CASE("sampling: frequencies match the distribution within 5 standard errors") {
  // 200000 draws: the standard error of a frequency p is sqrt(p (1 - p) / N) <= 0.0011, so a
  // bound of 5 of them fails by chance with probability below 1e-6 per bin (and the seed is
  // fixed, so the test is deterministic).
  constexpr int N = 200000;
  struct Case {
    SamplingSettings s;
    std::vector<double> want;
  };
  const std::vector<float> logits = log_probs({0.1, 0.2, 0.3, 0.4});
  const std::vector<Case> cases{
      {settings(1, 0, 1), {0.1, 0.2, 0.3, 0.4}},
      {settings(1, 2, 1), {0, 0, 3.0 / 7, 4.0 / 7}},
      {settings(1, 0, 0.65), {0, 0, 3.0 / 7, 4.0 / 7}},
  };
  for (std::size_t c = 0; c < cases.size(); ++c) {
    CAPTURE(c);
    std::vector<int> count(4, 0);
    std::uint64_t state = 1234 + c;
    for (int i = 0; i < N; ++i) ++count[static_cast<std::size_t>(sample_token(logits.data(), 4, cases[c].s, state))];
    for (std::size_t t = 0; t < 4; ++t) {
      const double p = cases[c].want[t], f = static_cast<double>(count[t]) / N;
      CAPTURE(t);
      CAPTURE(f);
      if (p == 0) CHECK(count[t] == 0);
      else CHECK(std::abs(f - p) <= 5 * std::sqrt(p * (1 - p) / N));
    }
  }
}

TEST_CASE("sampling: bad settings are rejected") {
  const std::vector<float> logits{0.0f, 1.0f};
  std::uint64_t state = 0;
  CHECK_THROWS(sample_token(logits.data(), 2, settings(1, -1, 1), state));
  CHECK_THROWS(sample_token(logits.data(), 2, settings(1, 0, 0), state));
  CHECK_THROWS(sample_token(logits.data(), 2, settings(1, 0, 1.5), state));
}
