// The learning-rate schedule: linear warmup from 0, then cosine or linear decay that reaches
// lr * min_lr_ratio exactly at the last step, or constant.
#include <doctest/doctest.h>

#include <cmath>

#include "optim/adamw.hpp"

using namespace llmlab;

TEST_CASE("optim: warmup then cosine ends at min_lr on the last step") {
  OptimSettings o;
  o.lr = 1e-3;
  o.min_lr_ratio = 0.1;
  o.warmup_steps = 10;
  o.schedule = LrSchedule::cosine;
  CHECK(learning_rate(o, 1, 100) == doctest::Approx(1e-4));
  CHECK(learning_rate(o, 5, 100) == doctest::Approx(5e-4));
  CHECK(learning_rate(o, 10, 100) == doctest::Approx(1e-3));
  CHECK(learning_rate(o, 11, 100) == doctest::Approx(1e-3));  // decay starts after warmup
  CHECK(learning_rate(o, 100, 100) == doctest::Approx(1e-4));
  // Halfway through the decay: the mean of peak and floor.
  CHECK(learning_rate(o, 11 + 89 / 2, 100) == doctest::Approx(0.5 * (1e-3 + 1e-4)).epsilon(0.02));
  for (std::int64_t s = 12; s <= 100; ++s) CHECK(learning_rate(o, s, 100) <= learning_rate(o, s - 1, 100));
}

TEST_CASE("optim: linear and constant schedules") {
  OptimSettings o;
  o.lr = 2.0;
  o.min_lr_ratio = 0.25;
  o.schedule = LrSchedule::linear;
  CHECK(learning_rate(o, 1, 5) == doctest::Approx(2.0));
  CHECK(learning_rate(o, 3, 5) == doctest::Approx(1.25));
  CHECK(learning_rate(o, 5, 5) == doctest::Approx(0.5));
  o.schedule = LrSchedule::constant;
  CHECK(learning_rate(o, 4, 5) == doctest::Approx(2.0));
  CHECK(learning_rate(o, 1, 1) == doctest::Approx(2.0));
}
