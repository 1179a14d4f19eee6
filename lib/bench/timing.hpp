// Timing harness for benchmarks: warm-up runs, then repeats, reported as median, min and max.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace llmlab {

struct Timing {
  double median_s = 0, min_s = 0, max_s = 0;
  int repeats = 0;
};

// Runs `fn` `warmup` times untimed, then `repeats` times timed.
Timing measure(const std::function<void()>& fn, int warmup, int repeats);

}  // namespace llmlab
