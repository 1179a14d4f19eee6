// The per-prompt-group policy losses of the RL trainer and their gradients with respect to
// each trained token's log-probability; the trainer turns those into per-token weights on the
// model's log-softmax backward. Everything is float64 on the host: a group is k samples of a
// few thousand tokens, far too little work to matter.
//
// k1.5 (arXiv 2501.12599 §2.3.2): with the iteration's policy pi_theta_i as reference and
// rho_j = log pi_theta(y_j|x) - log pi_theta_i(y_j|x), minimise
//   1/(2 tau k) * sum_j (r_j - rbar - tau * rho_j)^2,
// the paper's squared surrogate divided by 2 tau so a learning rate means the same as for
// policy gradient; at theta = theta_i (rho = 0) its gradient is exactly pg's.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace llmlab {

enum class PolicyLossKind { k15, pg, grpo };

const char* policy_loss_name(PolicyLossKind kind);  // "k1.5" | "pg" | "grpo"

struct PolicyLossSettings {
  PolicyLossKind kind = PolicyLossKind::k15;
  double tau = 0.1;       // k15: KL weight to the iteration's reference policy; > 0
  double clip_eps = 0.2;  // grpo: trust region [1 - eps, 1 + eps] on the ratio; >= 0
  double std_eps = 1e-6;  // grpo: added to the reward standard deviation
};

struct SampleTerms {
  double reward = 0;
  std::span<const float> logp;      // current policy log-prob of each trained response token
  std::span<const float> ref_logp;  // the same tokens under the iteration's reference policy (same length)
};

struct GroupLoss {
  double loss = 0;                         // this group's loss value
  std::vector<std::vector<double>> dlogp;  // d loss / d logp[t] for every sample j and token t
};

// The loss of one group of k samples of the same prompt and its gradient:
//   k15:  loss = 1/(2 tau k) sum_j (r_j - rbar - tau rho_j)^2;  dlogp_jt = -(r_j - rbar - tau rho_j) / k
//   pg:   loss = -(1/k) sum_j (r_j - rbar) sum_t logp_jt;        dlogp_jt = -(r_j - rbar) / k
//   grpo: A_j = (r_j - rbar) / (std + std_eps), std unbiased (0 when k = 1); ratio = exp(logp - ref);
//         loss = -(1/k) sum_j 1/|y_j| sum_t min(ratio A_j, clip(ratio, 1-eps, 1+eps) A_j);
//         dlogp_jt = -(1/k)(1/|y_j|) ratio A_j where the unclipped term is the min (ties: unclipped), else 0.
// Throws Error for an empty group, logp/ref_logp of different lengths, tau <= 0 (k15) or
// clip_eps < 0 (grpo).
GroupLoss group_loss(const PolicyLossSettings& s, const std::vector<SampleTerms>& samples);

// Mean over every token of the group of (logp - ref_logp), a cheap drift-from-reference metric
// (its negation estimates KL(pi_theta_i || pi_theta) on samples from pi_theta_i); 0 with no tokens.
// Throws Error on logp/ref_logp of different lengths.
double mean_log_ratio(const std::vector<SampleTerms>& samples);

}  // namespace llmlab
