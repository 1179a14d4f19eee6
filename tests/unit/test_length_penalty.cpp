// Kimi k1.5 length penalty (lib/rl/length_penalty): the formula on a worked example, zeros
// when there is no length signal, never positive for wrong answers, and size checks.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "rl/length_penalty.hpp"

using namespace llmlab;

TEST_CASE("length penalty: worked example follows the k1.5 formula") {
  // min 100, max 300: lambda = 0.5 - (len - 100) / 200.
  const std::vector<std::int64_t> len{100, 150, 200, 300, 120};
  const std::vector<bool> ok{true, true, false, false, false};
  const std::vector<double> p = length_penalty(len, ok);
  REQUIRE(p.size() == 5);
  CHECK(p[0] == doctest::Approx(0.5).epsilon(1e-15));    // shortest, correct
  CHECK(p[1] == doctest::Approx(0.25).epsilon(1e-15));   // correct: lambda
  CHECK(p[2] == doctest::Approx(0.0).epsilon(1e-15));    // wrong, lambda 0
  CHECK(p[3] == doctest::Approx(-0.5).epsilon(1e-15));   // wrong, longest: lambda
  CHECK(p[4] == doctest::Approx(0.0).epsilon(1e-15));    // wrong, lambda 0.4 clipped to 0
}

TEST_CASE("length penalty: all equal lengths give zeros") {
  const std::vector<double> p = length_penalty({64, 64, 64}, {true, false, true});
  CHECK(p == std::vector<double>{0, 0, 0});
}

TEST_CASE("length penalty: wrong answers never get a positive value") {
  const std::vector<std::int64_t> len{5, 17, 3, 90, 41, 3};
  const std::vector<double> p = length_penalty(len, std::vector<bool>(len.size(), false));
  REQUIRE(p.size() == len.size());
  for (const double e : p) CHECK(e <= 0);
  CHECK(p[3] == doctest::Approx(-0.5));  // the longest still pays the full penalty
  // The same lengths answered correctly do earn positive values.
  const std::vector<double> q = length_penalty(len, std::vector<bool>(len.size(), true));
  CHECK(q[2] == doctest::Approx(0.5));
}

TEST_CASE("length penalty: a single sample gets zero") {
  CHECK(length_penalty({1234}, {true}) == std::vector<double>{0});
  CHECK(length_penalty({1234}, {false}) == std::vector<double>{0});
  CHECK(length_penalty({}, {}).empty());
}

TEST_CASE("length penalty: size mismatch throws") {
  CHECK_THROWS_AS(length_penalty({1, 2, 3}, {true, false}), Error);
  CHECK_THROWS_AS(length_penalty({}, {true}), Error);
}
