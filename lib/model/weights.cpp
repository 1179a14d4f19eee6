#include "model/weights.hpp"

#include <fmt/format.h>
#include <xxhash.h>

#include <cmath>
#include <numbers>

#include "core/error.hpp"
#include "core/random.hpp"

namespace llmlab {

Weights::Weights(const ModelSpec& spec, TrackedMemory& mem) : table_(parameter_table(spec)) {
  num_layers_ = spec.num_layers;
  for (std::size_t i = 0; i < table_.size(); ++i) {
    offsets_.push_back(numel_);
    index_.emplace(table_[i].name, i);
    numel_ += table_[i].numel();
  }
  params_ = Tracked<float>(mem, numel_, Category::params);
  grads_ = Tracked<float>(mem, numel_, Category::grads);
}

std::size_t Weights::index_of(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error(fmt::format("internal: the model has no parameter '{}'", name));
  return it->second;
}

ParamSlice Weights::get(const std::string& name) const {
  const std::int64_t off = offsets_[index_of(name)];
  return {params_.get() + off, grads_.get() + off};
}

ParamSlice Weights::find(const std::string& name) const {
  return index_.count(name) ? get(name) : ParamSlice{};
}

namespace {

bool is_residual_projection(const std::string& name) {
  for (const char* suffix : {"attn.c_proj.weight", "mlp.c_proj.weight", "self_attn.o_proj.weight", "mlp.down_proj.weight"})
    if (name.size() >= std::char_traits<char>::length(suffix) &&
        name.compare(name.size() - std::char_traits<char>::length(suffix), std::string::npos, suffix) == 0)
      return true;
  return false;
}

bool is_norm(const ParamTensor& t) {
  return t.shape.size() == 1 && t.name.find("bias") == std::string::npos;
}

// Standard normal values from splitmix64 by Box-Muller: the same on every platform.
void fill_normal(float* x, std::int64_t n, double stddev, std::uint64_t state) {
  for (std::int64_t i = 0; i < n; i += 2) {
    const double u1 = (static_cast<double>(splitmix64(state) >> 11) + 0.5) * 0x1p-53;
    const double u2 = static_cast<double>(splitmix64(state) >> 11) * 0x1p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
    x[i] = static_cast<float>(r * std::cos(2 * std::numbers::pi * u2));
    if (i + 1 < n) x[i + 1] = static_cast<float>(r * std::sin(2 * std::numbers::pi * u2));
  }
}

}  // namespace

void Weights::initialize(std::uint64_t seed) {
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(std::max<std::int64_t>(1, num_layers_)));
  for (std::size_t i = 0; i < table_.size(); ++i) {
    const ParamTensor& t = table_[i];
    float* w = params_.get() + offsets_[i];
    const std::int64_t n = t.numel();
    if (t.shape.size() == 1) {
      const float value = is_norm(t) ? 1.0f : 0.0f;
      for (std::int64_t j = 0; j < n; ++j) w[j] = value;
      continue;
    }
    // Each tensor's stream depends only on the seed and its name.
    const std::uint64_t state = XXH64(t.name.data(), t.name.size(), seed);
    fill_normal(w, n, is_residual_projection(t.name) ? residual_std : 0.02, state);
  }
}

}  // namespace llmlab
