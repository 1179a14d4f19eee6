// Every byte a training step uses comes from here: allocations are tagged with the Plan's
// category, live bytes are counted per category, and the peak (with its breakdown) is what
// train reports next to the plan's prediction. Freed blocks are cached by size and reused,
// as a caching allocator does, so steady-state steps neither call the system allocator nor
// fault fresh pages in; the counts are of live (requested) bytes, not of the cache.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

#include "ops/backend.hpp"
#include "plan/plan.hpp"

namespace llmlab {

class TrackedMemory {
 public:
  explicit TrackedMemory(Backend& backend) : backend_(backend) {}
  ~TrackedMemory();
  TrackedMemory(const TrackedMemory&) = delete;
  TrackedMemory& operator=(const TrackedMemory&) = delete;

  void* allocate(std::int64_t bytes, Category category);
  void release(void* p);
  float* floats(std::int64_t count, Category category) {
    return static_cast<float*>(allocate(count * static_cast<std::int64_t>(sizeof(float)), category));
  }

  std::int64_t live_bytes() const { return live_; }
  std::int64_t peak_bytes() const { return peak_; }
  // Live bytes per category at the moment of the peak.
  const std::array<std::int64_t, kCategories>& at_peak() const { return at_peak_; }
  std::int64_t live(Category c) const { return live_by_[static_cast<std::size_t>(c)]; }
  void reset_peak();  // the next peak is measured from what is live now

 private:
  struct Block {
    std::int64_t bytes;
    Category category;
  };
  Backend& backend_;
  std::unordered_map<void*, Block> blocks_;
  std::multimap<std::int64_t, void*> cache_;  // freed blocks by size
  std::array<std::int64_t, kCategories> live_by_{}, at_peak_{};
  std::int64_t live_ = 0, peak_ = 0;
};

// An owning buffer of T from TrackedMemory (released on destruction).
template <class T>
class Tracked {
 public:
  Tracked() = default;
  Tracked(TrackedMemory& mem, std::int64_t count, Category category)
      : mem_(&mem), data_(static_cast<T*>(mem.allocate(count * static_cast<std::int64_t>(sizeof(T)), category))),
        count_(count) {}
  Tracked(Tracked&& o) noexcept : mem_(o.mem_), data_(o.data_), count_(o.count_) { o.data_ = nullptr; }
  Tracked& operator=(Tracked&& o) noexcept {
    if (this != &o) {
      reset();
      mem_ = o.mem_;
      data_ = o.data_;
      count_ = o.count_;
      o.data_ = nullptr;
    }
    return *this;
  }
  ~Tracked() { reset(); }
  void reset() {
    if (data_) mem_->release(data_);
    data_ = nullptr;
  }
  T* get() const { return data_; }
  std::int64_t size() const { return count_; }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  TrackedMemory* mem_ = nullptr;
  T* data_ = nullptr;
  std::int64_t count_ = 0;
};

}  // namespace llmlab
