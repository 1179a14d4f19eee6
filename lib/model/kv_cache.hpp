// The keys and values of every layer for a fixed number of sequence slots, what incremental
// decoding reads instead of recomputing the prefix (lib/model/generator.hpp). Keys are stored
// after RoPE, so a cached row never changes once written.
//
// Layout, per layer: [sequences, capacity, Hkv, D] for keys and the same for values (the
// layout attention_decode reads, lib/ops/backend.hpp). All layers' keys are one allocation and
// all values another, tagged Category::activations: the cache is what generation keeps alive
// between steps, as training keeps activations between forward and backward.
// Bytes: 2 * L * sequences * capacity * Hkv * D * 4; GPT-2 small (L = 12, Hkv * D = 768)
// needs 72 KiB per cached token, so 64 sequences of 1024 tokens take 4.5 GiB.
#pragma once

#include <cstdint>
#include <vector>

#include "model/tracked_memory.hpp"
#include "spec/model_spec.hpp"

namespace llmlab {

class KvCache {
 public:
  KvCache(const ModelSpec& m, TrackedMemory& mem, std::int64_t sequences, std::int64_t capacity);

  std::int64_t sequences() const { return sequences_; }
  std::int64_t capacity() const { return capacity_; }
  std::int64_t row_floats() const { return row_; }  // Hkv * D: one cached token of one layer
  static std::int64_t bytes(const ModelSpec& m, std::int64_t sequences, std::int64_t capacity);

  // [sequences, capacity, Hkv, D] of `layer` (device pointers).
  float* keys(std::int64_t layer) const { return k_.get() + layer * layer_; }
  float* values(std::int64_t layer) const { return v_.get() + layer * layer_; }
  // Token `pos` of sequence `seq` in a layer's keys or values.
  float* row(float* layer_base, std::int64_t seq, std::int64_t pos) const {
    return layer_base + (seq * capacity_ + pos) * row_;
  }

  // Tokens cached per sequence (host side; the generator advances them).
  std::int32_t length(std::int64_t seq) const { return lengths_[static_cast<std::size_t>(seq)]; }
  void set_length(std::int64_t seq, std::int32_t len) { lengths_[static_cast<std::size_t>(seq)] = len; }

 private:
  std::int64_t sequences_, capacity_, row_, layer_;
  Tracked<float> k_, v_;
  std::vector<std::int32_t> lengths_;
};

}  // namespace llmlab
