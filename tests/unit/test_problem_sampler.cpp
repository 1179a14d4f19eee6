// RL problem selection (lib/rl/problem_sampler): uniform and prioritised frequencies against
// their target probabilities, distinct draws, the curriculum's admitted set over time, and a
// state()/restore() round trip that continues with identical draws.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "rl/problem_sampler.hpp"

using namespace llmlab;

namespace {

ProblemSamplerSettings settings(SamplingStrategy strategy, std::int64_t curriculum_iterations = 10,
                                double min_weight = 0.05) {
  ProblemSamplerSettings s;
  s.strategy = strategy;
  s.curriculum_iterations = curriculum_iterations;
  s.min_weight = min_weight;
  return s;
}

const std::vector<double> kDifficulty{0.1, 0.9, 0.5, 0.3, 0.7, 1.0, 0.2, 0.8};

// Draws one problem `draws` times and checks each problem's frequency is within 5 standard
// errors of want[i].
void check_frequencies(ProblemSampler& sampler, const std::vector<double>& want, int draws) {
  std::vector<int> seen(want.size(), 0);
  for (int d = 0; d < draws; ++d) {
    const auto got = sampler.draw(1, d);
    REQUIRE(got.size() == 1);
    ++seen[static_cast<std::size_t>(got[0])];
  }
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double f = seen[i] / static_cast<double>(draws);
    const double se = std::sqrt(want[i] * (1 - want[i]) / draws);
    INFO("problem ", i, ": frequency ", f, " want ", want[i], " (standard error ", se, ")");
    CHECK(std::abs(f - want[i]) <= 5 * se);
  }
}

std::vector<std::vector<std::int64_t>> run(ProblemSampler& s, int iterations, std::int64_t count, std::int64_t first = 0) {
  std::vector<std::vector<std::int64_t>> out;
  for (int i = 0; i < iterations; ++i) out.push_back(s.draw(count, first + i));
  return out;
}

}  // namespace

TEST_CASE("problem sampler: names") {
  CHECK(std::string(sampling_strategy_name(SamplingStrategy::uniform)) == "uniform");
  CHECK(std::string(sampling_strategy_name(SamplingStrategy::curriculum)) == "curriculum");
  CHECK(std::string(sampling_strategy_name(SamplingStrategy::prioritized)) == "prioritized");
}

TEST_CASE("problem sampler: uniform frequencies are uniform") {
  ProblemSampler s(std::vector<double>(7, 0.0), settings(SamplingStrategy::uniform), 11);
  check_frequencies(s, std::vector<double>(7, 1.0 / 7), 70000);
  // Without replacement every problem is in a draw of 3 with probability 3/7.
  std::vector<int> in(7, 0);
  const int draws = 20000;
  for (int d = 0; d < draws; ++d)
    for (const std::int64_t p : s.draw(3, d)) ++in[static_cast<std::size_t>(p)];
  const double p = 3.0 / 7, se = std::sqrt(p * (1 - p) / draws);
  for (int i = 0; i < 7; ++i) CHECK(std::abs(in[static_cast<std::size_t>(i)] / static_cast<double>(draws) - p) <= 5 * se);
}

TEST_CASE("problem sampler: prioritized frequencies follow 1 minus success with a floor") {
  ProblemSampler s(std::vector<double>(5, 0.0), settings(SamplingStrategy::prioritized, 10, 0.05), 7);
  s.record(1, 5, 10);                    // weight 0.5
  s.record(2, 10, 10);                   // solved: the floor 0.05
  s.record(3, 1, 4);                     // weight 0.75
  s.record(4, 1, 2);
  s.record(4, 2, 2);                     // 3 of 4 over two records: weight 0.25
  CHECK(s.success_rate(0) == 0.0);       // unseen: weight 1
  CHECK(s.success_rate(4) == 0.75);
  const std::vector<double> w{1.0, 0.5, 0.05, 0.75, 0.25};
  double sum = 0;
  for (const double e : w) sum += e;
  std::vector<double> want;
  for (const double e : w) want.push_back(e / sum);
  check_frequencies(s, want, 100000);
}

TEST_CASE("problem sampler: draws are distinct problems for every strategy") {
  for (const auto strategy : {SamplingStrategy::uniform, SamplingStrategy::curriculum, SamplingStrategy::prioritized}) {
    INFO(std::string(sampling_strategy_name(strategy)));
    ProblemSampler s(kDifficulty, settings(strategy), 3);
    s.record(0, 3, 3);
    s.record(5, 1, 3);
    for (std::int64_t it = 0; it < 200; ++it) {
      const auto got = s.draw(5, it);
      REQUIRE(got.size() == 5);
      CHECK(std::set<std::int64_t>(got.begin(), got.end()).size() == 5);
      for (const std::int64_t p : got) CHECK((p >= 0 && p < 8));
    }
    auto all = s.draw(8, 0);  // count = problems: a permutation
    std::sort(all.begin(), all.end());
    CHECK(all == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
    CHECK(s.draw(0, 0).empty());
    CHECK_THROWS_AS(s.draw(9, 0), Error);
    CHECK_THROWS_AS(s.draw(-1, 0), Error);
  }
}

TEST_CASE("problem sampler: curriculum admits only easy problems early and all later") {
  ProblemSampler s(kDifficulty, settings(SamplingStrategy::curriculum, 10), 5);
  CHECK(s.admitted_difficulty(0) == doctest::Approx(0.1));
  CHECK(s.admitted_difficulty(5) == doctest::Approx(0.55));
  CHECK(s.admitted_difficulty(10) == 1.0);
  CHECK(s.admitted_difficulty(1000) == 1.0);
  // Iteration 0 admits only problem 0; two are asked for, so the easiest two.
  for (int d = 0; d < 50; ++d) {
    auto got = s.draw(2, 0);
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<std::int64_t>{0, 6});
  }
  // Iteration 5 (threshold 0.55): difficulties 0.1 0.5 0.3 0.2, and each of them turns up.
  std::set<std::int64_t> mid;
  for (int d = 0; d < 200; ++d)
    for (const std::int64_t p : s.draw(2, 5)) mid.insert(p);
  CHECK(mid == std::set<std::int64_t>{0, 2, 3, 6});
  // From iteration 10 on every problem is admitted.
  std::set<std::int64_t> late;
  for (int d = 0; d < 200; ++d)
    for (const std::int64_t p : s.draw(2, 10 + d)) late.insert(p);
  CHECK(late.size() == 8);
  // Other strategies admit everything.
  CHECK(ProblemSampler(kDifficulty, settings(SamplingStrategy::uniform), 5).admitted_difficulty(0) == 1.0);
  CHECK(ProblemSampler(kDifficulty, settings(SamplingStrategy::prioritized), 5).admitted_difficulty(0) == 1.0);
}

TEST_CASE("problem sampler: state and restore continue with identical draws") {
  for (const auto strategy : {SamplingStrategy::uniform, SamplingStrategy::curriculum, SamplingStrategy::prioritized}) {
    INFO(std::string(sampling_strategy_name(strategy)));
    ProblemSampler a(kDifficulty, settings(strategy), 1234);
    for (std::int64_t it = 0; it < 7; ++it) {
      for (const std::int64_t p : a.draw(3, it)) a.record(p, (p + it) % 3, 2);
    }
    // Through text, as a checkpoint would store it.
    const nlohmann::json saved = nlohmann::json::parse(a.state().dump());
    ProblemSampler b(kDifficulty, settings(strategy), 999);
    b.restore(saved);
    for (std::int64_t p = 0; p < 8; ++p) CHECK(b.success_rate(p) == a.success_rate(p));
    CHECK(run(a, 30, 3, 7) == run(b, 30, 3, 7));
    CHECK(a.state() == b.state());
  }
}

TEST_CASE("problem sampler: restore rejects another problem count or a malformed state") {
  ProblemSampler a(kDifficulty, settings(SamplingStrategy::prioritized), 1);
  ProblemSampler other(std::vector<double>(3, 0.0), settings(SamplingStrategy::prioritized), 1);
  CHECK_THROWS_AS(other.restore(a.state()), Error);
  nlohmann::json bad = a.state();
  bad["rng"] = "-1";
  CHECK_THROWS_AS(a.restore(bad), Error);
  bad = a.state();
  bad.erase("total");
  CHECK_THROWS_AS(a.restore(bad), Error);
  bad = a.state();
  bad["correct"][0] = 5;  // more correct than graded
  CHECK_THROWS_AS(a.restore(bad), Error);
  CHECK_THROWS_AS(a.restore(nlohmann::json::array()), Error);
}

TEST_CASE("problem sampler: draws are deterministic per seed") {
  for (const auto strategy : {SamplingStrategy::uniform, SamplingStrategy::curriculum, SamplingStrategy::prioritized}) {
    INFO(std::string(sampling_strategy_name(strategy)));
    ProblemSampler a(kDifficulty, settings(strategy), 42), b(kDifficulty, settings(strategy), 42),
        c(kDifficulty, settings(strategy), 43);
    const auto ra = run(a, 20, 3, 5);
    CHECK(ra == run(b, 20, 3, 5));
    CHECK(ra != run(c, 20, 3, 5));
  }
}

TEST_CASE("problem sampler: bad records and settings throw") {
  ProblemSampler s(kDifficulty, settings(SamplingStrategy::prioritized), 1);
  CHECK_THROWS_AS(s.record(8, 0, 1), Error);
  CHECK_THROWS_AS(s.record(-1, 0, 1), Error);
  CHECK_THROWS_AS(s.record(0, 3, 2), Error);
  CHECK_THROWS_AS(s.record(0, -1, 2), Error);
  CHECK_THROWS_AS(s.success_rate(8), Error);
  CHECK_THROWS_AS(s.draw(1, -1), Error);
  CHECK_THROWS_AS(ProblemSampler({0.1, std::nan("")}, settings(SamplingStrategy::uniform), 1), Error);
  CHECK_THROWS_AS(ProblemSampler(kDifficulty, settings(SamplingStrategy::prioritized, 10, 0.0), 1), Error);
}
