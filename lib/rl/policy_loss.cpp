// Group policy losses (k1.5, policy gradient, GRPO) and their per-token gradients; see
// policy_loss.hpp for the formulas.
#include "rl/policy_loss.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace llmlab {
namespace {

void check_sizes(const std::vector<SampleTerms>& samples) {
  for (std::size_t j = 0; j < samples.size(); ++j)
    if (samples[j].logp.size() != samples[j].ref_logp.size())
      throw Error(fmt::format("policy loss: sample {} has {} logp but {} ref_logp tokens", j, samples[j].logp.size(),
                              samples[j].ref_logp.size()));
}

double mean_reward(const std::vector<SampleTerms>& samples) {
  double sum = 0;
  for (const auto& s : samples) sum += s.reward;
  return sum / static_cast<double>(samples.size());
}

// sum_t (logp_t - ref_logp_t): log pi_theta(y|x) - log pi_theta_i(y|x) of one response.
double log_ratio(const SampleTerms& s) {
  double rho = 0;
  for (std::size_t t = 0; t < s.logp.size(); ++t)
    rho += static_cast<double>(s.logp[t]) - static_cast<double>(s.ref_logp[t]);
  return rho;
}

GroupLoss k15_loss(const PolicyLossSettings& st, const std::vector<SampleTerms>& samples) {
  const double k = static_cast<double>(samples.size());
  const double rbar = mean_reward(samples);
  GroupLoss out;
  out.dlogp.resize(samples.size());
  for (std::size_t j = 0; j < samples.size(); ++j) {
    const double e = samples[j].reward - rbar - st.tau * log_ratio(samples[j]);
    out.loss += e * e / (2 * st.tau * k);
    out.dlogp[j].assign(samples[j].logp.size(), -e / k);
  }
  return out;
}

GroupLoss pg_loss(const std::vector<SampleTerms>& samples) {
  const double k = static_cast<double>(samples.size());
  const double rbar = mean_reward(samples);
  GroupLoss out;
  out.dlogp.resize(samples.size());
  for (std::size_t j = 0; j < samples.size(); ++j) {
    const double adv = samples[j].reward - rbar;
    double logp = 0;
    for (const float l : samples[j].logp) logp += static_cast<double>(l);
    out.loss -= adv * logp / k;
    out.dlogp[j].assign(samples[j].logp.size(), -adv / k);
  }
  return out;
}

GroupLoss grpo_loss(const PolicyLossSettings& st, const std::vector<SampleTerms>& samples) {
  const std::size_t n = samples.size();
  const double k = static_cast<double>(n);
  const double rbar = mean_reward(samples);
  double var = 0;
  for (const auto& s : samples) var += (s.reward - rbar) * (s.reward - rbar);
  const double sd = n > 1 ? std::sqrt(var / (k - 1)) : 0.0;
  const double lo = 1 - st.clip_eps, hi = 1 + st.clip_eps;
  GroupLoss out;
  out.dlogp.resize(n);
  for (std::size_t j = 0; j < n; ++j) {
    const std::size_t T = samples[j].logp.size();
    out.dlogp[j].assign(T, 0.0);
    if (T == 0) continue;  // nothing trained, nothing to average over
    const double adv = n > 1 ? (samples[j].reward - rbar) / (sd + st.std_eps) : 0.0;
    const double w = 1 / (k * static_cast<double>(T));
    for (std::size_t t = 0; t < T; ++t) {
      const double ratio =
          std::exp(static_cast<double>(samples[j].logp[t]) - static_cast<double>(samples[j].ref_logp[t]));
      const double unclipped = ratio * adv;
      const double clipped = std::min(std::max(ratio, lo), hi) * adv;
      if (unclipped <= clipped) {
        out.loss -= w * unclipped;
        out.dlogp[j][t] = -w * unclipped;  // d ratio / d logp = ratio
      } else {
        out.loss -= w * clipped;  // constant in logp: no gradient outside the trust region
      }
    }
  }
  return out;
}

}  // namespace

const char* policy_loss_name(PolicyLossKind kind) {
  switch (kind) {
    case PolicyLossKind::k15: return "k1.5";
    case PolicyLossKind::pg: return "pg";
    case PolicyLossKind::grpo: return "grpo";
  }
  return "?";
}

GroupLoss group_loss(const PolicyLossSettings& s, const std::vector<SampleTerms>& samples) {
  if (samples.empty()) throw Error(fmt::format("policy loss {}: empty group", policy_loss_name(s.kind)));
  check_sizes(samples);
  switch (s.kind) {
    case PolicyLossKind::k15:
      if (!(s.tau > 0)) throw Error(fmt::format("policy loss k1.5: tau {} must be > 0", s.tau));
      return k15_loss(s, samples);
    case PolicyLossKind::pg: return pg_loss(samples);
    case PolicyLossKind::grpo:
      if (!(s.clip_eps >= 0)) throw Error(fmt::format("policy loss grpo: clip_eps {} must be >= 0", s.clip_eps));
      return grpo_loss(s, samples);
  }
  throw Error("policy loss: unknown kind");
}

double mean_log_ratio(const std::vector<SampleTerms>& samples) {
  check_sizes(samples);
  double sum = 0;
  std::size_t tokens = 0;
  for (const auto& s : samples) {
    sum += log_ratio(s);
    tokens += s.logp.size();
  }
  return tokens > 0 ? sum / static_cast<double>(tokens) : 0.0;
}

}  // namespace llmlab
