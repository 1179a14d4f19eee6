#include "model/tracked_memory.hpp"

#include "core/error.hpp"

namespace llmlab {

TrackedMemory::~TrackedMemory() {
  for (auto& [bytes, p] : cache_) backend_.release(p);
  for (auto& [p, block] : blocks_) backend_.release(p);
}

void* TrackedMemory::allocate(std::int64_t bytes, Category category) {
  if (bytes <= 0) bytes = 1;  // a distinct pointer even for empty buffers
  void* p = nullptr;
  auto hit = cache_.find(bytes);
  if (hit != cache_.end()) {
    p = hit->second;
    cache_.erase(hit);
  } else {
    p = backend_.allocate(static_cast<std::size_t>(bytes));
  }
  blocks_.emplace(p, Block{bytes, category});
  live_ += bytes;
  live_by_[static_cast<std::size_t>(category)] += bytes;
  if (live_ > peak_) {
    peak_ = live_;
    at_peak_ = live_by_;
  }
  return p;
}

void TrackedMemory::release(void* p) {
  auto it = blocks_.find(p);
  if (it == blocks_.end()) throw Error("internal: TrackedMemory::release of a pointer it did not allocate");
  live_ -= it->second.bytes;
  live_by_[static_cast<std::size_t>(it->second.category)] -= it->second.bytes;
  cache_.emplace(it->second.bytes, p);
  blocks_.erase(it);
}

void TrackedMemory::reset_peak() {
  peak_ = live_;
  at_peak_ = live_by_;
}

}  // namespace llmlab
