#include "rl/rollout_batch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "core/error.hpp"

namespace llmlab {

bool trains_token(const Trajectory& t, std::size_t index, std::int64_t trained) {
  if (trained == kAllTokens) return true;
  const std::int32_t at = t.produced_at[index];
  return trained == kLastSegment ? at == t.produced_at.back() : at == trained;
}

std::vector<RolloutBatch> pack_rollouts(const std::vector<const Trajectory*>& trajectories, std::int64_t rows,
                                        std::int64_t row_length, std::int64_t trained) {
  if (rows < 1 || row_length < 2) throw Error(fmt::format("pack_rollouts: {} rows of {} tokens", rows, row_length));
  auto length = [&](std::size_t i) {
    return static_cast<std::int64_t>(trajectories[i]->prompt.size() + trajectories[i]->response.size());
  };
  std::vector<std::size_t> order(trajectories.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  for (std::size_t i : order)
    if (length(i) > row_length)
      throw Error(fmt::format("pack_rollouts: a trajectory of {} tokens exceeds the row length {}", length(i), row_length));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return length(a) > length(b); });

  // First fit decreasing into rows.
  std::vector<std::vector<std::size_t>> row_members;
  std::vector<std::int64_t> row_fill;
  for (std::size_t i : order) {
    std::size_t r = 0;
    while (r < row_fill.size() && row_fill[r] + length(i) > row_length) ++r;
    if (r == row_fill.size()) row_members.emplace_back(), row_fill.push_back(0);
    row_members[r].push_back(i);
    row_fill[r] += length(i);
  }

  std::vector<RolloutBatch> out;
  for (std::size_t r0 = 0; r0 < row_members.size(); r0 += static_cast<std::size_t>(rows)) {
    RolloutBatch rb;
    Batch& b = rb.batch;
    b.rows = rows;
    b.cu_seqlens.push_back(0);
    const std::size_t r1 = std::min(row_members.size(), r0 + static_cast<std::size_t>(rows));
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t i : row_members[r]) {
        const Trajectory& t = *trajectories[i];
        PackedTrajectory p{i, static_cast<std::int64_t>(b.tokens.size()), static_cast<std::int64_t>(t.prompt.size()),
                           static_cast<std::int64_t>(t.response.size())};
        const std::int64_t L = p.prompt + p.response;
        b.tokens.insert(b.tokens.end(), t.prompt.begin(), t.prompt.end());
        b.tokens.insert(b.tokens.end(), t.response.begin(), t.response.end());
        for (std::int64_t k = 0; k < L; ++k) {
          const bool last = k + 1 == L;
          b.targets.push_back(last ? -1 : b.tokens[static_cast<std::size_t>(p.begin + k + 1)]);
          b.position_ids.push_back(static_cast<std::int32_t>(k));
          // Position k predicts token k + 1: a response token when k + 1 >= prompt.
          const std::int64_t r_index = k + 1 - p.prompt;
          const bool counts = !last && r_index >= 0 && trains_token(t, static_cast<std::size_t>(r_index), trained);
          b.loss_mask.push_back(counts ? 1 : 0);
          b.loss_tokens += counts ? 1 : 0;
        }
        b.cu_seqlens.push_back(static_cast<std::int32_t>(b.tokens.size()));
        b.max_seqlen = std::max<std::int32_t>(b.max_seqlen, static_cast<std::int32_t>(L));
        rb.trajectories.push_back(p);
      }
    out.push_back(std::move(rb));
  }
  return out;
}

std::vector<std::int64_t> trained_positions(const RolloutBatch& b, const PackedTrajectory& p) {
  std::vector<std::int64_t> out;
  for (std::int64_t k = p.prompt - 1; k < p.prompt + p.response - 1; ++k)
    if (b.batch.loss_mask[static_cast<std::size_t>(p.begin + k)]) out.push_back(p.begin + k);
  return out;
}

}  // namespace llmlab
