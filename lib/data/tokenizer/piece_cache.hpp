// A per-thread memo of pre-token -> ids. Most pre-tokens of real text repeat ("the", " of",
// "\n"), so remembering their BPE result skips the merge loop for ~95% of them. Each thread has
// its own cache, so encode() stays const and lock-free on every core.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmlab::tok {

class PieceCache {
 public:
  // Pre-tokens longer than this are not remembered: they are rare and would crowd the arena.
  static constexpr std::size_t kMaxPieceBytes = 128;

  // Appends the remembered ids of `piece` to out and returns true, or returns false.
  bool find(std::string_view piece, std::uint64_t hash, std::vector<std::int32_t>& out) const;
  // Remembers ids for piece; when the cache is full it starts over (text drifts, so recent
  // pieces are the ones worth keeping).
  void insert(std::string_view piece, std::uint64_t hash, std::span<const std::int32_t> ids);

 private:
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t key = 0, key_len = 0;  // key_len 0: empty slot (pre-tokens are never empty)
    std::uint32_t ids = 0, ids_len = 0;
  };
  void clear_and_grow(bool grow);

  std::vector<Slot> slots_;  // open addressing, linear probing, power-of-two size
  std::string keys_;
  std::vector<std::int32_t> ids_;
  std::size_t used_ = 0;
};

// A process-unique number for a tokenizer instance, naming its caches (not its address, which
// a later tokenizer may reuse).
std::uint64_t new_cache_owner();

// The calling thread's cache for `owner`. A thread keeps caches for its 4 most recently used
// tokenizers; older ones are dropped.
PieceCache& thread_piece_cache(std::uint64_t owner);

}  // namespace llmlab::tok
