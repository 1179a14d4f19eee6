// Median-of-repeats wall-clock timing (steady_clock).
#include "bench/timing.hpp"

#include <algorithm>

namespace llmlab {

Timing measure(const std::function<void()>& fn, int warmup, int repeats) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> seconds;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  Timing t;
  t.repeats = repeats;
  if (seconds.empty()) return t;
  t.min_s = seconds.front();
  t.max_s = seconds.back();
  const std::size_t n = seconds.size();
  t.median_s = n % 2 ? seconds[n / 2] : 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]);
  return t;
}

}  // namespace llmlab
