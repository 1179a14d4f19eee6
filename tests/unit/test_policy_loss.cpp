// RL policy losses (lib/rl/policy_loss): each kind's gradient against central finite
// differences of its loss, k1.5 equal to policy gradient at the reference policy, the mean
// baseline, GRPO's clipping direction, single-sample groups and bad settings.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "rl/policy_loss.hpp"

using namespace llmlab;

namespace {

// A group owning its token log-probabilities; terms() views them as the loss takes them.
struct Group {
  std::vector<double> rewards;
  std::vector<std::vector<float>> logp, ref;

  void add(double reward, std::vector<float> lp, std::vector<float> rf) {
    rewards.push_back(reward);
    logp.push_back(std::move(lp));
    ref.push_back(std::move(rf));
  }
  std::vector<SampleTerms> terms() const {
    std::vector<SampleTerms> t;
    for (std::size_t j = 0; j < rewards.size(); ++j) t.push_back({rewards[j], logp[j], ref[j]});
    return t;
  }
};

// Token log-probabilities are multiples of 1/64 near -1 and the reference differs by the
// given multiples of 1/64, so logp +- h (h = 2^-12) is exact in float: the perturbation is the
// one intended and the loss itself is float64 throughout.
std::vector<float> dyadic(const std::vector<double>& v) {
  std::vector<float> out;
  for (const double e : v) out.push_back(static_cast<float>(e));
  return out;
}

// A group of 4 samples of different lengths, with the policy moved off the reference so the
// k1.5 log-ratio term and GRPO's ratios are exercised. The log ratios keep at least 0.03 from
// GRPO's clip points log(0.8) = -0.223 and log(1.2) = 0.182, where the loss has kinks.
Group mixed_group() {
  Group g;
  g.add(1.0, dyadic({-0.5, -1.25, -2.0625}), dyadic({-0.75, -1.1875, -2.0}));                 // d = .25 .. -.0625
  g.add(0.0, dyadic({-1.0, -0.125, -3.5, -0.0625}), dyadic({-0.6875, -0.125, -3.0, -0.125}));  // d = -.3125 0 -.5 .0625
  g.add(0.3, dyadic({-0.25}), dyadic({-0.375}));                                              // d = .125
  g.add(0.7, dyadic({-2.5, -1.5}), dyadic({-2.0, -1.5625}));                                  // d = -.5 .0625
  return g;
}

PolicyLossSettings settings(PolicyLossKind kind) {
  PolicyLossSettings s;
  s.kind = kind;
  s.tau = 0.1;
  s.clip_eps = 0.2;
  return s;
}

// Compares group_loss's gradient with central differences of its loss for every token.
void check_finite_differences(PolicyLossKind kind, Group g) {
  const PolicyLossSettings s = settings(kind);
  const GroupLoss at = group_loss(s, g.terms());
  REQUIRE(at.dlogp.size() == g.rewards.size());
  const double h = 0x1p-12;
  for (std::size_t j = 0; j < g.logp.size(); ++j) {
    REQUIRE(at.dlogp[j].size() == g.logp[j].size());
    for (std::size_t t = 0; t < g.logp[j].size(); ++t) {
      const float x = g.logp[j][t];
      g.logp[j][t] = static_cast<float>(static_cast<double>(x) + h);
      REQUIRE(static_cast<double>(g.logp[j][t]) == static_cast<double>(x) + h);  // exact perturbation
      const double up = group_loss(s, g.terms()).loss;
      g.logp[j][t] = static_cast<float>(static_cast<double>(x) - h);
      REQUIRE(static_cast<double>(g.logp[j][t]) == static_cast<double>(x) - h);
      const double down = group_loss(s, g.terms()).loss;
      g.logp[j][t] = x;
      const double fd = (up - down) / (2 * h);
      const double err = std::abs(fd - at.dlogp[j][t]) / std::max(1e-3, std::abs(fd));
      INFO(std::string(policy_loss_name(kind)), " sample ", j, " token ", t, ": analytic ", at.dlogp[j][t], " finite difference ", fd);
      CHECK(err < 1e-6);
    }
  }
}

}  // namespace

TEST_CASE("policy loss: names") {
  CHECK(std::string(policy_loss_name(PolicyLossKind::k15)) == "k1.5");
  CHECK(std::string(policy_loss_name(PolicyLossKind::pg)) == "pg");
  CHECK(std::string(policy_loss_name(PolicyLossKind::grpo)) == "grpo");
}

TEST_CASE("policy loss: k1.5 gradient matches finite differences") {
  check_finite_differences(PolicyLossKind::k15, mixed_group());
}

TEST_CASE("policy loss: pg gradient matches finite differences") {
  check_finite_differences(PolicyLossKind::pg, mixed_group());
}

TEST_CASE("policy loss: grpo gradient matches finite differences") {
  Group g = mixed_group();
  g.add(0.9, {}, {});  // a sample with no trained tokens changes the baseline only
  check_finite_differences(PolicyLossKind::grpo, g);
  const GroupLoss l = group_loss(settings(PolicyLossKind::grpo), g.terms());
  CHECK(l.dlogp[4].empty());
  CHECK(std::isfinite(l.loss));
}

TEST_CASE("policy loss: k1.5 loss value is the squared surrogate over 2 tau") {
  const Group g = mixed_group();
  const std::vector<SampleTerms> terms = g.terms();
  double rbar = 0;
  for (const double r : g.rewards) rbar += r / 4;
  double want = 0;
  for (std::size_t j = 0; j < 4; ++j) {
    double rho = 0;
    for (std::size_t t = 0; t < g.logp[j].size(); ++t) rho += static_cast<double>(g.logp[j][t]) - static_cast<double>(g.ref[j][t]);
    want += std::pow(g.rewards[j] - rbar - 0.1 * rho, 2) / (2 * 0.1 * 4);
  }
  CHECK(group_loss(settings(PolicyLossKind::k15), terms).loss == doctest::Approx(want).epsilon(1e-14));
}

TEST_CASE("policy loss: k1.5 gradient equals pg gradient at the reference policy") {
  Group g;
  g.add(0.3, dyadic({-0.5, -1.25, -2.0625}), dyadic({-0.5, -1.25, -2.0625}));
  g.add(1.0, dyadic({-1.0, -0.1}), dyadic({-1.0, -0.1}));
  g.add(0.0, dyadic({-3.3}), dyadic({-3.3}));
  const GroupLoss k15 = group_loss(settings(PolicyLossKind::k15), g.terms());
  const GroupLoss pg = group_loss(settings(PolicyLossKind::pg), g.terms());
  CHECK(k15.dlogp == pg.dlogp);  // bit-exact
  CHECK(pg.dlogp[1][0] < 0);     // the best sample is pushed up (loss falls as its logp rises)
  // Off the reference they differ: the KL term pulls back.
  g.logp[1][0] += 0.25f;
  CHECK(group_loss(settings(PolicyLossKind::k15), g.terms()).dlogp != group_loss(settings(PolicyLossKind::pg), g.terms()).dlogp);
}

TEST_CASE("policy loss: pg gradient sums to zero over a group with equal token counts") {
  Group g;
  g.add(0.3, dyadic({-0.5, -1.0}), dyadic({-0.5, -1.0}));
  g.add(0.7, dyadic({-2.0, -0.1}), dyadic({-2.0, -0.1}));
  g.add(1.0, dyadic({-0.2, -0.3}), dyadic({-0.2, -0.3}));
  g.add(0.1, dyadic({-4.0, -0.9}), dyadic({-4.0, -0.9}));
  const GroupLoss pg = group_loss(settings(PolicyLossKind::pg), g.terms());
  double sum = 0, abs_sum = 0;
  for (const auto& d : pg.dlogp)
    for (const double e : d) {
      sum += e;
      abs_sum += std::abs(e);
    }
  CHECK(abs_sum > 0.1);
  CHECK(std::abs(sum) < 1e-15);
  CHECK(pg.dlogp[0][0] == doctest::Approx(-(0.3 - 0.525) / 4).epsilon(1e-14));
}

TEST_CASE("policy loss: grpo clipping zeroes gradients outside the trust region in the right direction") {
  // Rewards 1 and 0: A = +-0.5 / (std + eps) with the unbiased std sqrt(0.5).
  // Log ratios +-0.5 put the ratio at 1.65 and 0.61, outside [0.8, 1.2]; 0 is inside.
  Group g;
  g.add(1.0, dyadic({0.0, 0.0, 0.0}), dyadic({-0.5, 0.5, 0.0}));  // A > 0, ratio high / low / 1
  g.add(0.0, dyadic({0.0, 0.0, 0.0}), dyadic({0.5, -0.5, 0.0}));  // A < 0, ratio low / high / 1
  const GroupLoss l = group_loss(settings(PolicyLossKind::grpo), g.terms());
  const double A = 0.5 / (std::sqrt(0.5) + 1e-6);
  const double w = 1.0 / (2 * 3);
  // A > 0: a ratio above 1 + eps is clipped (no further push up); below 1 - eps still pushed up.
  CHECK(l.dlogp[0][0] == 0.0);
  CHECK(l.dlogp[0][1] == doctest::Approx(-w * std::exp(-0.5) * A).epsilon(1e-12));
  CHECK(l.dlogp[0][2] == doctest::Approx(-w * A).epsilon(1e-12));
  // A < 0: a ratio below 1 - eps is clipped (no further push down); above 1 + eps still pushed down.
  CHECK(l.dlogp[1][0] == 0.0);
  CHECK(l.dlogp[1][1] == doctest::Approx(w * std::exp(0.5) * A).epsilon(1e-12));
  CHECK(l.dlogp[1][2] == doctest::Approx(w * A).epsilon(1e-12));
  // With no clipping (a huge trust region) every token has a gradient.
  PolicyLossSettings wide = settings(PolicyLossKind::grpo);
  wide.clip_eps = 10;
  const GroupLoss u = group_loss(wide, g.terms());
  CHECK(u.dlogp[0][0] == doctest::Approx(-w * std::exp(0.5) * A).epsilon(1e-12));
  CHECK(u.dlogp[1][0] == doctest::Approx(w * std::exp(-0.5) * A).epsilon(1e-12));
}

TEST_CASE("policy loss: a single-sample group has zero gradient") {
  Group g;
  g.add(1.0, dyadic({-0.5, -1.5}), dyadic({-0.75, -1.0}));
  for (const PolicyLossKind kind : {PolicyLossKind::pg, PolicyLossKind::grpo}) {
    const GroupLoss l = group_loss(settings(kind), g.terms());
    INFO(std::string(policy_loss_name(kind)));
    CHECK(l.dlogp == std::vector<std::vector<double>>{{0.0, 0.0}});
    CHECK(l.loss == 0.0);
  }
  // k1.5 at the reference: nothing to learn from one sample.
  Group at;
  at.add(1.0, dyadic({-0.5, -1.5}), dyadic({-0.5, -1.5}));
  CHECK(group_loss(settings(PolicyLossKind::k15), at.terms()).dlogp == std::vector<std::vector<double>>{{0.0, 0.0}});
  // Off the reference only the KL term acts: dlogp = tau * rho, pulling back (rho = -0.25).
  const GroupLoss off = group_loss(settings(PolicyLossKind::k15), g.terms());
  CHECK(off.dlogp[0][0] == doctest::Approx(0.1 * -0.25).epsilon(1e-14));
}

TEST_CASE("policy loss: bad settings and inputs throw") {
  const Group g = mixed_group();
  PolicyLossSettings s = settings(PolicyLossKind::k15);
  for (const double tau : {0.0, -0.1, std::nan("")}) {
    s.tau = tau;
    CHECK_THROWS_AS(group_loss(s, g.terms()), Error);
  }
  s.kind = PolicyLossKind::pg;  // tau is k1.5's alone
  CHECK_NOTHROW(group_loss(s, g.terms()));
  CHECK_THROWS_AS(group_loss(settings(PolicyLossKind::pg), {}), Error);
  Group bad;
  bad.add(1.0, dyadic({-0.5, -1.5}), dyadic({-0.5}));
  for (const PolicyLossKind kind : {PolicyLossKind::k15, PolicyLossKind::pg, PolicyLossKind::grpo})
    CHECK_THROWS_AS(group_loss(settings(kind), bad.terms()), Error);
  CHECK_THROWS_AS(mean_log_ratio(bad.terms()), Error);
}

TEST_CASE("policy loss: mean log ratio averages over every token") {
  const Group g = mixed_group();  // its 10 log ratios sum to -0.9375
  CHECK(mean_log_ratio(g.terms()) == doctest::Approx(-0.9375 / 10).epsilon(1e-14));
  CHECK(mean_log_ratio({}) == 0.0);
  Group empty;
  empty.add(1.0, {}, {});
  CHECK(mean_log_ratio(empty.terms()) == 0.0);
}
