#include "optim/adamw.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace llmlab {

double learning_rate(const OptimSettings& o, std::int64_t step, std::int64_t total) {
  if (o.warmup_steps > 0 && step <= o.warmup_steps)
    return o.lr * static_cast<double>(step) / static_cast<double>(o.warmup_steps);
  const double min_lr = o.lr * o.min_lr_ratio;
  const std::int64_t span = total - o.warmup_steps;
  const double progress =
      span <= 1 ? 1.0 : std::clamp(static_cast<double>(step - o.warmup_steps - 1) / static_cast<double>(span - 1), 0.0, 1.0);
  switch (o.schedule) {
    case LrSchedule::constant: return o.lr;
    case LrSchedule::linear: return o.lr - (o.lr - min_lr) * progress;
    case LrSchedule::cosine: return min_lr + (o.lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
  }
  return o.lr;
}

AdamW::AdamW(Weights& weights, const OptimSettings& settings, Backend& backend, TrackedMemory& mem)
    : AdamW(weights, settings, backend, mem, 0, weights.numel(), weights.numel()) {}

AdamW::AdamW(Weights& weights, const OptimSettings& settings, Backend& backend, TrackedMemory& mem, std::int64_t begin,
             std::int64_t end, std::int64_t elements)
    : weights_(weights), settings_(settings), be_(backend), begin_(begin), end_(end),
      m_(mem, elements, Category::optimizer), v_(mem, elements, Category::optimizer) {
  be_.zero(m_.get(), elements);
  be_.zero(v_.get(), elements);
}

UpdateStats AdamW::update(std::int64_t step, double lr) {
  const double sum = end_ > begin_ ? be_.sum_squares(weights_.grad_at(begin_), end_ - begin_) : 0.0;
  return update(step, lr, std::sqrt(sum));
}

UpdateStats AdamW::update(std::int64_t step, double lr, double grad_norm) {
  UpdateStats stats;
  stats.grad_norm = grad_norm;
  stats.finite = std::isfinite(stats.grad_norm);
  if (!stats.finite || end_ <= begin_) return stats;
  float* g = weights_.grad_at(begin_);
  const std::int64_t n = end_ - begin_;
  // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
  if (settings_.grad_clip > 0) {
    const double coef = settings_.grad_clip / (stats.grad_norm + 1e-6);
    if (coef < 1) be_.scale(g, n, static_cast<float>(coef));
  }
  // Per tensor (weight decay is per tensor), the part inside the range.
  const auto& table = weights_.table();
  for (std::size_t i = 0; i < table.size(); ++i) {
    const std::int64_t lo = std::max(begin_, weights_.offset(i));
    const std::int64_t hi = std::min(end_, weights_.offset(i) + table[i].numel());
    if (lo >= hi) continue;
    be_.adamw(weights_.param_at(lo), weights_.grad_at(lo), m_.get() + (lo - begin_), v_.get() + (lo - begin_), hi - lo,
              static_cast<float>(lr), static_cast<float>(settings_.beta1), static_cast<float>(settings_.beta2),
              static_cast<float>(settings_.eps), table[i].decay ? static_cast<float>(settings_.weight_decay) : 0.0f,
              step);
  }
  return stats;
}

}  // namespace llmlab
