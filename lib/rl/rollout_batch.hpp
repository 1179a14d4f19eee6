// Trajectories -> training micro-batches without padding: each prompt + response is one
// document of a packed row (rows of row_length tokens, micro-batches of `rows` rows), the loss
// counting only the selected response tokens (partial rollouts: a trajectory's last segment;
// earlier segments, sampled by older policies, are context, not trained on). Rows are filled first-fit by decreasing
// length, so the batch count is near the token total / capacity.
#pragma once

#include <cstdint>
#include <vector>

#include "data/batch.hpp"
#include "rl/rollout.hpp"

namespace llmlab {

// Where a trajectory lies in its micro-batch.
struct PackedTrajectory {
  std::size_t trajectory = 0;  // index into the list given to pack_rollouts
  std::int64_t begin = 0;      // its first token's index in the batch's tokens
  std::int64_t prompt = 0;     // prompt tokens (its response starts at begin + prompt)
  std::int64_t response = 0;   // response tokens
};

struct RolloutBatch {
  Batch batch;
  std::vector<PackedTrajectory> trajectories;
};

// Which response tokens count in the loss: all of them (kAllTokens), those sampled in one
// iteration (>= 0), or each trajectory's last segment (kLastSegment: the tokens sampled in the
// iteration that finished it; partial rollouts, where earlier segments are context only).
constexpr std::int64_t kAllTokens = -1, kLastSegment = -2;
// Throws Error when a trajectory is longer than row_length.
std::vector<RolloutBatch> pack_rollouts(const std::vector<const Trajectory*>& trajectories, std::int64_t rows,
                                        std::int64_t row_length, std::int64_t trained);

// Whether response token `index` of `t` counts under `trained` (see above).
bool trains_token(const Trajectory& t, std::size_t index, std::int64_t trained);

// Indices (into the batch's tokens) of the loss-counted positions of trajectory p: the
// position before each trained response token, in response order; the log-probability at such
// a position is that of the response token.
std::vector<std::int64_t> trained_positions(const RolloutBatch& b, const PackedTrajectory& p);

}  // namespace llmlab
