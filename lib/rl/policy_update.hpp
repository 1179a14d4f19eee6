// The policy-optimisation passes of one rl-train iteration on this rank: reference
// log-probabilities under pi_theta_i, then per mini-batch the forward/backward whose token
// gradients come from the policy loss (lib/rl/policy_loss.hpp), each group weighted by
// 1 / (groups in the mini-batch over all ranks). Every rank runs the same number of passes
// (padding with empty ones) because ZeRO's reductions and gathers are collective.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "dist/communicator.hpp"
#include "model/model.hpp"
#include "rl/policy_loss.hpp"
#include "rl/rollout.hpp"

namespace llmlab {

struct TrainGroup {
  std::vector<const Trajectory*> samples;
  std::vector<double> rewards;
};

struct PolicyPassStats {
  double loss = 0;          // the mini-batch's loss (this rank's groups, weighted)
  double log_ratio = 0;     // sum over trained tokens of log pi_theta - log pi_theta_i
  std::int64_t tokens = 0;  // trained tokens
  std::int64_t passes = 0;  // forward/backward passes run (padding included)
};

class PolicyUpdater {
 public:
  // Trains the response tokens `trained` selects (kAllTokens, kLastSegment or an iteration:
  // lib/rl/rollout_batch.hpp).
  PolicyUpdater(Model& model, Communicator& comm, const PolicyLossSettings& loss, std::int64_t rows,
                std::int64_t row_length, std::int64_t trained);

  // Forward passes storing log pi_theta_i of every trained token of `groups`. Without this
  // call, each pass uses its own log-probabilities as the reference (exact for a single
  // gradient step per iteration, where theta = theta_i, and one forward cheaper).
  void compute_reference(const std::vector<TrainGroup>& groups);
  // Accumulates the gradients of the mini-batch's loss over this rank's `groups` (the
  // optimizer step follows). `group_weight` = 1 / groups of the mini-batch on all ranks.
  PolicyPassStats accumulate(const std::vector<TrainGroup>& groups, double group_weight);

 private:
  template <class F>
  std::int64_t run_passes(const std::vector<TrainGroup>& groups, bool training, F&& per_batch);

  Model& model_;
  Communicator& comm_;
  PolicyLossSettings loss_;
  std::int64_t rows_, row_length_, iteration_;
  std::map<const Trajectory*, std::vector<float>> reference_;
};

}  // namespace llmlab
