#include "rl/sampling.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"
#include "core/random.hpp"

namespace llmlab {
namespace {

// A uniform double in [0, 1) from the top 53 bits of one draw.
double uniform01(std::uint64_t& state) { return static_cast<double>(splitmix64(state) >> 11) * 0x1p-53; }

bool greedy(const SamplingSettings& s) { return !(s.temperature > 0); }

// Unnormalised probabilities exp((logit - max) / temperature), float64, max-subtracted so the
// largest is exactly 1 and nothing overflows.
std::vector<double> weights(const float* logits, std::int64_t V, double temperature) {
  const float max = *std::max_element(logits, logits + V);
  std::vector<double> w(static_cast<std::size_t>(V));
  for (std::int64_t i = 0; i < V; ++i)
    w[static_cast<std::size_t>(i)] = std::exp((static_cast<double>(logits[i]) - max) / temperature);
  return w;
}

// Kept tokens, most likely first, with unnormalised weights; total is their sum.
std::vector<Candidate> kept(const float* logits, std::int64_t V, const SamplingSettings& s, double& total) {
  const std::vector<double> w = weights(logits, V, s.temperature);
  std::vector<std::int32_t> order(static_cast<std::size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  const auto more_likely = [&](std::int32_t a, std::int32_t b) {
    const auto ia = static_cast<std::size_t>(a), ib = static_cast<std::size_t>(b);
    return w[ia] != w[ib] ? w[ia] > w[ib] : a < b;
  };
  const std::int64_t k = s.top_k > 0 ? std::min(s.top_k, V) : V;
  if (s.top_p < 1.0 || k < V) {
    // Only the first k need to be in order; a partial sort keeps large vocabularies cheap.
    std::partial_sort(order.begin(), order.begin() + k, order.end(), more_likely);
    order.resize(static_cast<std::size_t>(k));
  }
  double all = 0;
  for (const std::int32_t t : order) all += w[static_cast<std::size_t>(t)];
  std::vector<Candidate> out;
  total = 0;
  for (const std::int32_t t : order) {
    // Nucleus: a token is kept while the tokens before it hold less than top_p of the mass.
    if (!out.empty() && total >= s.top_p * all) break;
    out.push_back({t, w[static_cast<std::size_t>(t)]});
    total += out.back().prob;
  }
  return out;
}

}  // namespace

void validate(const SamplingSettings& s) {
  if (s.top_k < 0) throw Error(fmt::format("sampling: top_k {} is negative (0 keeps every token)", s.top_k));
  if (!(s.top_p > 0 && s.top_p <= 1)) throw Error(fmt::format("sampling: top_p {} is outside (0, 1]", s.top_p));
}

std::int32_t argmax(const float* logits, std::int64_t V) {
  return static_cast<std::int32_t>(std::max_element(logits, logits + V) - logits);  // first maximum
}

std::vector<Candidate> sampling_support(const float* logits, std::int64_t V, const SamplingSettings& s) {
  validate(s);
  if (greedy(s)) return {{argmax(logits, V), 1.0}};
  double total = 0;
  std::vector<Candidate> c = kept(logits, V, s, total);
  for (auto& e : c) e.prob /= total;
  return c;
}

std::int32_t sample_token(const float* logits, std::int64_t V, const SamplingSettings& s, std::uint64_t& state) {
  validate(s);
  if (greedy(s)) return argmax(logits, V);
  double total = 0;
  const std::vector<Candidate> c = kept(logits, V, s, total);
  // Inverse CDF over the kept tokens in their order; the last one takes any rounding slack.
  const double u = uniform01(state) * total;
  double cumulative = 0;
  for (const auto& e : c) {
    cumulative += e.prob;
    if (u < cumulative) return e.token;
  }
  return c.back().token;
}

std::uint64_t sequence_seed(std::uint64_t seed, std::uint64_t prompt, std::uint64_t sample) {
  std::uint64_t state = seed;
  state = splitmix64(state) ^ prompt;
  state = splitmix64(state) ^ sample;
  return splitmix64(state);
}

}  // namespace llmlab
