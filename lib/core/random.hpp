// Deterministic randomness for data order: splitmix64 and a Fisher-Yates permutation that
// give the same result on every platform and standard library (std::shuffle and the
// std distributions do not), so a seed always means the same order.
#pragma once

#include <cstdint>
#include <vector>

namespace llmlab {

// Steele, Lea and Flood's splitmix64: advances `state` and returns the next 64-bit value.
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A uniform value in [0, bound) without modulo bias: draws below 2^64 mod bound are rejected.
inline std::uint64_t uniform_below(std::uint64_t& state, std::uint64_t bound) {
  if (bound <= 1) return 0;
  const std::uint64_t threshold = (0 - bound) % bound;
  while (true) {
    const std::uint64_t x = splitmix64(state);
    if (x >= threshold) return x % bound;
  }
}

// 0..n-1 in a seeded Fisher-Yates order.
inline std::vector<std::uint64_t> seeded_permutation(std::uint64_t n, std::uint64_t seed) {
  std::vector<std::uint64_t> order(n);
  for (std::uint64_t i = 0; i < n; ++i) order[i] = i;
  std::uint64_t state = seed;
  for (std::uint64_t i = n; i > 1; --i) {
    const std::uint64_t j = uniform_below(state, i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

}  // namespace llmlab
