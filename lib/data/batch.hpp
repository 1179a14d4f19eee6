// Batches for training: micro-batches of packed rows, flattened without padding (rmpad).
// Conventions (FlashAttention varlen): cu_seqlens has one entry per document plus one, starting
// at 0; position ids restart at each document (continuation chunks continue their count); the
// last token of a document has no target, so no document is ever predicted from another.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/shard/shard_format.hpp"

namespace llmlab {

struct Batch {
  std::vector<std::int32_t> tokens;        // real tokens of all rows, back to back
  std::vector<std::int32_t> targets;       // next token in the same document, or -1
  std::vector<std::uint8_t> loss_mask;     // 1 where the target counts in the loss
  std::vector<std::int32_t> position_ids;
  std::vector<std::int32_t> cu_seqlens;    // documents + 1 entries
  std::int32_t max_seqlen = 0;             // longest document in the batch
  std::int64_t rows = 0;
  std::int64_t loss_tokens = 0;            // sum of loss_mask (for per-token normalisation)
};

// Where a BatchReader is, for checkpoints and bit-exact resume.
struct DataCursor {
  std::uint64_t epoch = 0;
  std::uint64_t position = 0;  // rows of this rank's order already returned in this epoch
};

// Reads micro-batches of `micro_batch` rows from shards. Rows are numbered globally across the
// shards in the order given, and visited in an order that is a deterministic shuffle per
// (seed, epoch): seeded_permutation (core/random.hpp) keyed by splitmix64(splitmix64(seed) +
// epoch), the same on every platform. Rank r of `world` takes positions r, r + world, ... of that order, the last
// partial round dropped, so ranks see disjoint rows and equally many. Epochs follow each other
// without end; a micro-batch may span the end of one epoch and the start of the next, so every
// batch has exactly micro_batch rows. A cursor is valid for the same shards, seed and world.
class BatchReader {
 public:
  BatchReader(const std::vector<std::string>& shards, std::int64_t micro_batch, std::uint64_t seed,
              std::int64_t rank = 0, std::int64_t world = 1);
  ~BatchReader();

  Batch next();
  DataCursor cursor() const;  // the next row to read; seek(cursor()) then next() continues bit-exactly
  void seek(const DataCursor& cursor);  // InputError when position >= rows_per_epoch()
  std::uint64_t rows_per_epoch() const;  // this rank's rows

  // Builds the batch of the given rows (also used by tests and inspect).
  static Batch make_batch(const std::vector<PackedRow>& rows);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace llmlab
