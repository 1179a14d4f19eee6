// AdamW over the model's flat parameter buffer: the learning-rate schedule, global-norm
// gradient clipping (PyTorch's clip_grad_norm_ rule) and the update, with weight decay only on
// the tensors the parameter table marks as decayed (matrices; not norms, biases, embeddings).
#pragma once

#include <cstdint>

#include "model/tracked_memory.hpp"
#include "model/weights.hpp"
#include "ops/backend.hpp"
#include "spec/settings.hpp"

namespace llmlab {

// Learning rate at 1-based optimizer step `step` of `total`: linear warmup from 0 over
// warmup_steps, then cosine or linear decay to lr * min_lr_ratio at the last step, or constant.
double learning_rate(const OptimSettings& o, std::int64_t step, std::int64_t total);

struct UpdateStats {
  double grad_norm = 0;  // global L2 norm before clipping
  bool finite = true;    // false: a NaN or inf gradient; nothing was updated
};

class AdamW {
 public:
  // Updates every parameter; moments for all of them.
  AdamW(Weights& weights, const OptimSettings& settings, Backend& backend, TrackedMemory& mem);
  // Updates the flat range [begin, end) (a ZeRO shard, stored on this rank); the moments hold
  // `elements` >= end - begin values (the padded shard the Plan counts).
  AdamW(Weights& weights, const OptimSettings& settings, Backend& backend, TrackedMemory& mem, std::int64_t begin,
        std::int64_t end, std::int64_t elements);

  // Clips the gradients by `grad_norm` (the global norm, computed by the caller over all
  // ranks), then updates the range at 1-based `step` with `lr`.
  UpdateStats update(std::int64_t step, double lr, double grad_norm);
  // Single process: the norm of this range's gradients.
  UpdateStats update(std::int64_t step, double lr);

  std::int64_t begin() const { return begin_; }
  std::int64_t end() const { return end_; }
  float* m() const { return m_.get(); }  // first moments of [begin, end)
  float* v() const { return v_.get(); }  // second moments

 private:
  Weights& weights_;
  OptimSettings settings_;
  Backend& be_;
  std::int64_t begin_, end_;
  Tracked<float> m_, v_;
};

}  // namespace llmlab
