// Section offsets of a version-1 shard, computed from the header's counts with overflow checks:
// the reader feeds it counts from an untrusted file, so a corrupt count must not wrap around.
#include "data/shard/shard_format.hpp"

namespace llmlab {

namespace {

bool add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) { return !__builtin_add_overflow(a, b, &out); }
bool mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }
bool align8(std::uint64_t a, std::uint64_t& out) {
  if (!add(a, 7, out)) return false;
  out &= ~std::uint64_t{7};
  return true;
}

}  // namespace

std::optional<ShardLayout> shard_layout(const ShardInfo& info) {
  ShardLayout l;
  std::uint64_t bytes = 0;
  std::uint64_t index_entries = 0;
  std::uint64_t index_bytes = 0;
  const bool ok = align8(kShardFixedHeaderBytes + info.tokenizer.size(), l.tokens) &&
                  mul(info.tokens, info.token_bytes, bytes) && align8(bytes, bytes) &&
                  add(l.tokens, bytes, l.loss_mask) &&
                  align8(info.tokens / 8 + (info.tokens % 8 != 0 ? 1 : 0), bytes) &&
                  add(l.loss_mask, bytes, l.row_docs) &&
                  add(info.rows, 1, index_entries) && mul(index_entries, 8, index_bytes) &&
                  add(l.row_docs, index_bytes, l.docs) &&
                  mul(info.docs, 8, bytes) && add(l.docs, bytes, l.row_offsets) &&
                  add(l.row_offsets, index_bytes, l.footer) &&
                  add(l.footer, kShardFooterBytes, l.file_bytes);
  if (!ok) return std::nullopt;
  return l;
}

}  // namespace llmlab
