// The BPE merge loop. Symbols form a linked list over the pre-token's bytes; a min-heap holds
// candidate merges by (rank, position). A popped candidate is applied only if its pair still
// produces the same token; then the new neighbours' pairs are pushed. This is Hugging Face's
// Word::merge_all step for step, so even tokenizers whose merges disagree with their ranks
// come out identical.
#include "data/tokenizer/bpe.hpp"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <queue>

namespace llmlab::tok {

namespace {

std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

// Fibonacci hashing spreads the two packed ids over the table.
std::size_t slot_of(std::uint64_t key, std::size_t mask) {
  return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> 20) & mask;
}

struct Symbol {
  std::int32_t id;
  std::int32_t prev, next;  // -1 at either end
  std::uint32_t len;        // bytes covered; 0 once merged into its left neighbour
};

struct Candidate {
  std::uint32_t rank;
  std::int32_t pos;
  std::int32_t result;
  // Lowest rank first, then leftmost (std::priority_queue pops the largest).
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

// Reused across calls: the merge loop runs for every cache miss.
struct Scratch {
  std::vector<Symbol> symbols;
  std::priority_queue<Candidate> heap;
};

}  // namespace

BpeModel::BpeModel(const std::array<std::int32_t, 256>& byte_ids,
                   TokenIndex whole_tokens, const std::vector<Merge>& merges,
                   bool ignore_merges)
    : byte_ids_(byte_ids), whole_tokens_(std::move(whole_tokens)), ignore_merges_(ignore_merges) {
  const std::size_t size = std::bit_ceil(std::max<std::size_t>(16, merges.size() * 2));
  merge_keys_.assign(size, kEmpty);
  merge_values_.resize(size);
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    const std::uint64_t key = pair_key(m.left, m.right);
    std::size_t i = slot_of(key, size - 1);
    while (merge_keys_[i] != kEmpty && merge_keys_[i] != key) i = (i + 1) & (size - 1);
    merge_keys_[i] = key;
    merge_values_[i] = {static_cast<std::uint32_t>(rank), m.result};
  }
}

const BpeModel::MergeValue* BpeModel::find_merge(std::int32_t left, std::int32_t right) const {
  const std::uint64_t key = pair_key(left, right);
  const std::size_t mask = merge_keys_.size() - 1;
  for (std::size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
    if (merge_keys_[i] == key) return &merge_values_[i];
    if (merge_keys_[i] == kEmpty) return nullptr;
  }
}

void BpeModel::encode(std::string_view piece, PieceCache& cache, std::vector<std::int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_ids_[static_cast<std::uint8_t>(piece[0])]);
    return;
  }
  const std::uint64_t hash = XXH3_64bits(piece.data(), piece.size());
  if (cache.find(piece, hash, out)) return;
  const std::size_t mark = out.size();
  // Llama 3 sets ignore_merges: a pre-token that is itself in the vocabulary is one token,
  // even where the merges would split it differently.
  const auto whole = ignore_merges_ ? whole_tokens_.find(piece) : whole_tokens_.end();
  if (whole != whole_tokens_.end())
    out.push_back(whole->second);
  else
    merge(piece, out);
  cache.insert(piece, hash, std::span<const std::int32_t>(out).subspan(mark));
}

void BpeModel::merge(std::string_view piece, std::vector<std::int32_t>& out) const {
  thread_local Scratch scratch;
  auto& symbols = scratch.symbols;
  auto& heap = scratch.heap;
  const auto n = static_cast<std::int32_t>(piece.size());
  symbols.resize(piece.size());
  for (std::int32_t i = 0; i < n; ++i)
    symbols[i] = {byte_ids_[static_cast<std::uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, 1};
  for (std::int32_t i = 0; i + 1 < n; ++i)
    if (const MergeValue* m = find_merge(symbols[i].id, symbols[i + 1].id)) heap.push({m->rank, i, m->result});

  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    const Symbol right = symbols[left.next];
    // A stale candidate: its pair changed since it was pushed.
    const MergeValue* still = find_merge(left.id, right.id);
    if (still == nullptr || still->result != top.result) continue;
    symbols[left.next].len = 0;
    left.id = top.result;
    left.len += right.len;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0)
      if (const MergeValue* m = find_merge(symbols[left.prev].id, left.id)) heap.push({m->rank, left.prev, m->result});
    if (left.next >= 0)
      if (const MergeValue* m = find_merge(left.id, symbols[left.next].id)) heap.push({m->rank, top.pos, m->result});
  }
  for (std::int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace llmlab::tok
