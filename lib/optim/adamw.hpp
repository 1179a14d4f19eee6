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
  AdamW(Weights& weights, const OptimSettings& settings, Backend& backend, TrackedMemory& mem);

  // Clips the gradients, then updates every parameter at 1-based `step` with `lr`.
  UpdateStats update(std::int64_t step, double lr);

  float* m() const { return m_.get(); }  // first moments, the parameters' layout
  float* v() const { return v_.get(); }  // second moments

 private:
  Weights& weights_;
  OptimSettings settings_;
  Backend& be_;
  Tracked<float> m_, v_;
};

}  // namespace llmlab
