// Open-addressing pre-token cache with byte and id arenas, and the per-thread cache registry.
#include "data/tokenizer/piece_cache.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <memory>

namespace llmlab::tok {

namespace {

// Up to 64 Ki entries, at most ~11 MB per thread and tokenizer: the Python docs need more than
// 32 Ki (with half that, Qwen3 encodes them at 30 MB/s instead of 45). The tables start small
// so a thread that encodes a few strings stays cheap.
constexpr std::size_t kInitialSlots = 1 << 12;
constexpr std::size_t kMaxSlots = 1 << 17;
constexpr std::size_t kMaxKeyBytes = 4 << 20;
constexpr std::size_t kMaxIds = 1 << 20;

}  // namespace

bool PieceCache::find(std::string_view piece, std::uint64_t hash, std::vector<std::int32_t>& out) const {
  if (slots_.empty()) return false;
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.key_len == 0) return false;
    if (s.hash == hash && s.key_len == piece.size() && std::memcmp(keys_.data() + s.key, piece.data(), piece.size()) == 0) {
      out.insert(out.end(), ids_.begin() + s.ids, ids_.begin() + s.ids + s.ids_len);
      return true;
    }
  }
}

void PieceCache::clear_and_grow(bool grow) {
  const std::size_t size = slots_.empty() ? kInitialSlots : grow ? slots_.size() * 2 : slots_.size();
  if (grow && !slots_.empty()) {
    // Rehash what is there into the doubled table.
    std::vector<Slot> old(size);
    old.swap(slots_);
    for (const Slot& s : old) {
      if (s.key_len == 0) continue;
      std::size_t i = s.hash & (size - 1);
      while (slots_[i].key_len != 0) i = (i + 1) & (size - 1);
      slots_[i] = s;
    }
    return;
  }
  slots_.assign(size, Slot{});
  keys_.clear();
  ids_.clear();
  used_ = 0;
}

void PieceCache::insert(std::string_view piece, std::uint64_t hash, std::span<const std::int32_t> ids) {
  if (piece.empty() || piece.size() > kMaxPieceBytes) return;
  if (slots_.empty()) clear_and_grow(false);
  if ((used_ + 1) * 2 > slots_.size()) clear_and_grow(slots_.size() < kMaxSlots);
  if (keys_.size() + piece.size() > kMaxKeyBytes || ids_.size() + ids.size() > kMaxIds) clear_and_grow(false);
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = hash & mask;
  while (slots_[i].key_len != 0) i = (i + 1) & mask;
  slots_[i] = {hash, static_cast<std::uint32_t>(keys_.size()), static_cast<std::uint32_t>(piece.size()),
               static_cast<std::uint32_t>(ids_.size()), static_cast<std::uint32_t>(ids.size())};
  keys_.append(piece);
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  ++used_;
}

std::uint64_t new_cache_owner() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

PieceCache& thread_piece_cache(std::uint64_t owner) {
  struct Entry {
    std::uint64_t owner = 0, last_use = 0;
    std::unique_ptr<PieceCache> cache;
  };
  thread_local std::array<Entry, 4> entries;
  thread_local std::uint64_t clock = 0;
  ++clock;
  Entry* victim = &entries[0];
  for (Entry& e : entries) {
    if (e.owner == owner) {
      e.last_use = clock;
      return *e.cache;
    }
    if (e.last_use < victim->last_use) victim = &e;
  }
  victim->owner = owner;
  victim->last_use = clock;
  victim->cache = std::make_unique<PieceCache>();
  return *victim->cache;
}

}  // namespace llmlab::tok
