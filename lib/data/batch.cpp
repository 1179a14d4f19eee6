// Micro-batches over packed shards: a deterministic per-epoch shuffle, split across ranks, and
// the rmpad flattening (tokens, targets, loss mask, position ids, cu_seqlens) of batch.hpp.
#include "data/batch.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/random.hpp"
#include "data/shard/shard_reader.hpp"

namespace llmlab {

namespace {

// The row order of one epoch: core/random.hpp's splitmix64-driven Fisher-Yates, which is the same
// on every platform and standard library (std::shuffle is not). Its key chains seed and epoch
// through splitmix64, so neighbouring seeds or epochs give unrelated orders.
std::vector<std::uint64_t> epoch_order(std::uint64_t rows, std::uint64_t seed, std::uint64_t epoch) {
  std::uint64_t state = seed;
  std::uint64_t keyed = splitmix64(state) + epoch;
  return seeded_permutation(rows, splitmix64(keyed));
}

}  // namespace

struct BatchReader::State {
  std::vector<std::string> paths;
  std::vector<ShardReader> shards;
  std::vector<std::uint64_t> first_row;  // global index of each shard's row 0, plus the total
  std::int64_t micro_batch = 1;
  std::uint64_t seed = 0;
  std::uint64_t rank = 0;
  std::uint64_t world = 1;
  std::uint64_t per_rank = 0;  // rows of each rank per epoch: total / world, the tail dropped
  DataCursor at;
  std::vector<std::uint64_t> order;  // this rank's global rows for epoch order_epoch
  std::uint64_t order_epoch = std::numeric_limits<std::uint64_t>::max();

  void ensure_order() {
    if (order_epoch == at.epoch) return;
    const auto all = epoch_order(first_row.back(), seed, at.epoch);
    order.resize(static_cast<std::size_t>(per_rank));
    for (std::uint64_t k = 0; k < per_rank; ++k) order[k] = all[rank + k * world];
    order_epoch = at.epoch;
  }

  PackedRow fetch(std::uint64_t global) const {
    const auto it = std::upper_bound(first_row.begin(), first_row.end(), global);
    const auto shard = static_cast<std::size_t>(it - first_row.begin() - 1);
    return shards[shard].row(global - first_row[shard]);
  }
};

BatchReader::BatchReader(const std::vector<std::string>& shards, std::int64_t micro_batch, std::uint64_t seed,
                         std::int64_t rank, std::int64_t world)
    : state_(std::make_unique<State>()) {
  auto& s = *state_;
  if (shards.empty()) throw InputError("batch reader: no shards given");
  if (micro_batch < 1) throw InputError(fmt::format("batch reader: micro_batch must be at least 1 (got {})", micro_batch));
  if (world < 1 || rank < 0 || rank >= world)
    throw InputError(fmt::format("batch reader: rank {} is outside a world of {}", rank, world));
  s.paths = shards;
  s.micro_batch = micro_batch;
  s.seed = seed;
  s.rank = static_cast<std::uint64_t>(rank);
  s.world = static_cast<std::uint64_t>(world);
  s.first_row.push_back(0);
  for (const auto& path : shards) {
    s.shards.emplace_back(path);
    const auto& info = s.shards.back().info();
    const auto& first = s.shards.front().info();
    // Ids from different tokenizers would be silently mixed into one model input.
    if (info.tokenizer != first.tokenizer || info.vocab_size != first.vocab_size)
      throw InputError(fmt::format("{}: tokenizer '{}' (vocab {}) differs from {}'s '{}' (vocab {})", path, info.tokenizer,
                                   info.vocab_size, shards.front(), first.tokenizer, first.vocab_size));
    s.first_row.push_back(s.first_row.back() + info.rows);
  }
  s.per_rank = s.first_row.back() / s.world;
  if (s.per_rank == 0)
    throw InputError(fmt::format("{}: the shards hold {} rows, fewer than the {} ranks", shards.front(), s.first_row.back(), world));
}

BatchReader::~BatchReader() = default;

std::uint64_t BatchReader::rows_per_epoch() const { return state_->per_rank; }

DataCursor BatchReader::cursor() const { return state_->at; }

void BatchReader::seek(const DataCursor& cursor) {
  if (cursor.position >= state_->per_rank)
    throw InputError(fmt::format("data cursor position {} is beyond the {} rows per epoch of this rank (different shards "
                                 "or world size?)", cursor.position, state_->per_rank));
  state_->at = cursor;
}

// A micro-batch may span two epochs: every batch then has exactly micro_batch rows (constant
// shapes) and no row is skipped. The cursor always points at the next row to read.
Batch BatchReader::next() {
  auto& s = *state_;
  std::vector<PackedRow> rows;
  rows.reserve(static_cast<std::size_t>(s.micro_batch));
  for (std::int64_t i = 0; i < s.micro_batch; ++i) {
    s.ensure_order();
    rows.push_back(s.fetch(s.order[s.at.position]));
    if (++s.at.position == s.per_rank) s.at = DataCursor{s.at.epoch + 1, 0};
  }
  return make_batch(rows);
}

Batch BatchReader::make_batch(const std::vector<PackedRow>& rows) {
  Batch b;
  std::uint64_t total = 0, docs = 0;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    std::uint64_t sum = 0;
    for (const auto& d : row.docs) {
      if (d.length == 0) throw InputError(fmt::format("make_batch: row {} has an empty document", r));
      if (std::uint64_t{d.position_offset} + d.length > static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max()))
        throw InputError(fmt::format("make_batch: row {} has position ids beyond int32", r));
      sum += d.length;
    }
    if (sum != row.tokens.size() || row.loss_mask.size() != row.tokens.size())
      throw InputError(fmt::format("make_batch: row {} has {} tokens, {} mask entries and documents summing to {}", r,
                                   row.tokens.size(), row.loss_mask.size(), sum));
    total += sum;
    docs += row.docs.size();
  }
  // cu_seqlens and positions are int32 (FlashAttention's varlen interface).
  if (total > static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max()))
    throw InputError(fmt::format("make_batch: {} tokens do not fit int32 cu_seqlens", total));
  const auto n = static_cast<std::size_t>(total);
  b.tokens.reserve(n);
  b.targets.reserve(n);
  b.loss_mask.reserve(n);
  b.position_ids.reserve(n);
  b.cu_seqlens.reserve(static_cast<std::size_t>(docs) + 1);
  b.cu_seqlens.push_back(0);
  for (const auto& row : rows) {
    std::size_t t = 0;  // index into the row
    for (const auto& d : row.docs) {
      for (std::uint32_t i = 0; i < d.length; ++i, ++t) {
        // The last token of a document (or chunk) predicts nothing: the next token belongs to
        // another document, or continues in a row this batch does not hold.
        const bool last = i + 1 == d.length;
        const std::int32_t target = last ? -1 : row.tokens[t + 1];
        const std::uint8_t counted = (!last && row.loss_mask[t + 1] != 0) ? 1 : 0;
        b.tokens.push_back(row.tokens[t]);
        b.targets.push_back(target);
        b.loss_mask.push_back(counted);
        b.position_ids.push_back(static_cast<std::int32_t>(d.position_offset + i));
        b.loss_tokens += counted;
      }
      b.cu_seqlens.push_back(b.cu_seqlens.back() + static_cast<std::int32_t>(d.length));
      b.max_seqlen = std::max(b.max_seqlen, static_cast<std::int32_t>(d.length));
    }
  }
  b.rows = static_cast<std::int64_t>(rows.size());
  return b;
}

}  // namespace llmlab
