#include "rl/policy_update.hpp"

#include <algorithm>
#include <limits>

#include "rl/rollout_batch.hpp"

namespace llmlab {

namespace {

// A pass that changes nothing: two tokens, no loss. Ranks with fewer micro-batches than the
// others run it so that every collective has all its ranks.
RolloutBatch empty_batch(std::int64_t rows) {
  static const Trajectory none = [] {
    Trajectory t;
    t.prompt = {0};
    t.response = {0};
    t.produced_at = {0};
    return t;
  }();
  return pack_rollouts({&none}, rows, 2, std::numeric_limits<std::int64_t>::max()).front();  // nothing trained
}

}  // namespace

PolicyUpdater::PolicyUpdater(Model& model, Communicator& comm, const PolicyLossSettings& loss, std::int64_t rows,
                             std::int64_t row_length, std::int64_t iteration)
    : model_(model), comm_(comm), loss_(loss), rows_(rows), row_length_(row_length), iteration_(iteration) {}

template <class F>
std::int64_t PolicyUpdater::run_passes(const std::vector<TrainGroup>& groups, bool training, F&& per_batch) {
  std::vector<const Trajectory*> all;
  for (const auto& g : groups) all.insert(all.end(), g.samples.begin(), g.samples.end());
  std::vector<RolloutBatch> batches = all.empty() ? std::vector<RolloutBatch>{} : pack_rollouts(all, rows_, row_length_, iteration_);
  double passes = static_cast<double>(batches.size());
  if (comm_.world_size() > 1) comm_.all_reduce_max_f64(&passes, 1);
  const auto n = static_cast<std::int64_t>(passes);
  const RolloutBatch pad = empty_batch(rows_);
  for (std::int64_t i = 0; i < n; ++i) {
    const bool real = i < static_cast<std::int64_t>(batches.size());
    const RolloutBatch& rb = real ? batches[static_cast<std::size_t>(i)] : pad;
    if (training) {
      model_.forward_backward(
          rb.batch,
          [&](std::span<const float> logp, std::span<float> dlogp) {
            if (real) per_batch(rb, all, logp, dlogp);
          },
          i + 1 == n);
    } else {
      const std::vector<float> logp = model_.token_logprobs(rb.batch);
      std::vector<float> unused(logp.size());
      if (real) per_batch(rb, all, std::span<const float>(logp), std::span<float>(unused));
    }
  }
  return n;
}

void PolicyUpdater::compute_reference(const std::vector<TrainGroup>& groups) {
  reference_.clear();
  run_passes(groups, false,
             [&](const RolloutBatch& rb, const std::vector<const Trajectory*>& all, std::span<const float> logp,
                 std::span<float>) {
               for (const PackedTrajectory& p : rb.trajectories) {
                 std::vector<float>& ref = reference_[all[p.trajectory]];
                 for (const std::int64_t pos : trained_positions(rb, p)) ref.push_back(logp[static_cast<std::size_t>(pos)]);
               }
             });
}

PolicyPassStats PolicyUpdater::accumulate(const std::vector<TrainGroup>& groups, double group_weight) {
  // Which group and sample each trajectory is.
  std::map<const Trajectory*, std::pair<std::size_t, std::size_t>> where;
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (std::size_t j = 0; j < groups[g].samples.size(); ++j) where[groups[g].samples[j]] = {g, j};
  std::map<const Trajectory*, std::vector<float>> current;  // log pi_theta of the trained tokens
  const std::vector<float> none;
  auto terms_of = [&](std::size_t g, const std::map<const Trajectory*, std::vector<float>>& have) {
    std::vector<SampleTerms> terms;
    for (std::size_t j = 0; j < groups[g].samples.size(); ++j) {
      const Trajectory* t = groups[g].samples[j];
      auto it = have.find(t);
      const std::vector<float>& cur = it == have.end() ? none : it->second;
      const std::vector<float>& ref = it == have.end() ? none : reference_.empty() ? cur : reference_.at(t);
      terms.push_back({groups[g].rewards[j], cur, ref});
    }
    return terms;
  };

  PolicyPassStats stats;
  stats.passes = run_passes(
      groups, true,
      [&](const RolloutBatch& rb, const std::vector<const Trajectory*>& all, std::span<const float> logp,
          std::span<float> dlogp) {
        // This batch's trajectories, with the positions of their trained tokens.
        std::map<const Trajectory*, std::vector<std::int64_t>> positions;
        std::map<const Trajectory*, std::vector<float>> here;
        for (const PackedTrajectory& p : rb.trajectories) {
          const Trajectory* t = all[p.trajectory];
          positions[t] = trained_positions(rb, p);
          for (const std::int64_t pos : positions[t]) here[t].push_back(logp[static_cast<std::size_t>(pos)]);
          current[t] = here[t];
        }
        // A sample's token gradients depend on its own log-probabilities and its group's
        // rewards only: samples of the group in other batches enter with no tokens.
        std::vector<std::size_t> touched;
        for (const auto& [t, pos] : positions) touched.push_back(where.at(t).first);
        std::sort(touched.begin(), touched.end());
        touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
        for (const std::size_t g : touched) {
          const GroupLoss gl = group_loss(loss_, terms_of(g, here));
          for (std::size_t j = 0; j < groups[g].samples.size(); ++j) {
            auto it = positions.find(groups[g].samples[j]);
            if (it == positions.end()) continue;
            for (std::size_t k = 0; k < it->second.size(); ++k)
              dlogp[static_cast<std::size_t>(it->second[k])] = static_cast<float>(group_weight * gl.dlogp[j][k]);
          }
        }
      });
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const std::vector<SampleTerms> terms = terms_of(g, current);
    stats.loss += group_weight * group_loss(loss_, terms).loss;
    for (const SampleTerms& s : terms) {
      stats.tokens += static_cast<std::int64_t>(s.logp.size());
      for (std::size_t k = 0; k < s.logp.size(); ++k) stats.log_ratio += static_cast<double>(s.logp[k]) - s.ref_logp[k];
    }
  }
  return stats;
}

}  // namespace llmlab
