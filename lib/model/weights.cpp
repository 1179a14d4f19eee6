#include "model/weights.hpp"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.hpp"
#include "core/random.hpp"

namespace llmlab {

Weights::Weights(const ModelSpec& spec, TrackedMemory& mem, WeightsLayout layout)
    : table_(parameter_table(spec)), units_(parameter_units(spec, table_)), layout_(layout) {
  num_layers_ = spec.num_layers;
  for (std::size_t i = 0; i < table_.size(); ++i) {
    offsets_.push_back(numel_);
    index_.emplace(table_[i].name, i);
    numel_ += table_[i].numel();
  }
  if (layout_.world < 1 || layout_.rank < 0 || layout_.rank >= layout_.world)
    throw Error(fmt::format("internal: rank {} in a world of {}", layout_.rank, layout_.world));
  shard_ = (numel_ + layout_.world - 1) / layout_.world;
  shard_begin_ = std::min(numel_, layout_.rank * shard_);
  shard_end_ = std::min(numel_, shard_begin_ + shard_);
  params_ = Tracked<float>(mem, layout_.shard_params ? shard_ : numel_, Category::params);
  grads_ = Tracked<float>(mem, layout_.shard_grads ? shard_ : numel_, Category::grads);
  // The padding past the last element of a shard takes part in collectives: keep it zero.
  for (std::int64_t i = 0; i < params_.size(); ++i) params_.get()[i] = 0.0f;
  bound_.resize(table_.size());
  bind_stored();
}

std::size_t Weights::unit_index(const std::string& name) const {
  for (std::size_t u = 0; u < units_.size(); ++u)
    if (units_[u].name == name) return u;
  throw Error(fmt::format("internal: the model has no parameter unit '{}'", name));
}

float* Weights::param_at(std::int64_t i) const {
  if (!layout_.shard_params) return params_.get() + i;
  if (i < shard_begin_ || i > shard_end_)
    throw Error(fmt::format("internal: parameter element {} is not in this rank's shard [{}, {})", i, shard_begin_, shard_end_));
  return params_.get() + (i - shard_begin_);
}

float* Weights::grad_at(std::int64_t i) const {
  if (!layout_.shard_grads) return grads_.get() + i;
  if (i < shard_begin_ || i > shard_end_)
    throw Error(fmt::format("internal: gradient element {} is not in this rank's shard [{}, {})", i, shard_begin_, shard_end_));
  return grads_.get() + (i - shard_begin_);
}

void Weights::bind_stored() {
  for (std::size_t i = 0; i < table_.size(); ++i)
    bound_[i] = {layout_.shard_params ? nullptr : params_.get() + offsets_[i],
                 layout_.shard_grads ? nullptr : grads_.get() + offsets_[i]};
}

std::size_t Weights::index_of(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error(fmt::format("internal: the model has no parameter '{}'", name));
  return it->second;
}

ParamSlice Weights::get(const std::string& name) const {
  const ParamSlice s = bound_[index_of(name)];
  if (!s.w) throw Error(fmt::format("internal: parameter '{}' is used but not gathered", name));
  return s;
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

// Elements [begin, end) of a tensor's standard normal values (times stddev) into x: a pair of
// elements per Box-Muller draw from two splitmix64 outputs. splitmix64 adds a constant to its
// state per output, so any pair's state is known without generating the ones before it: a
// shard computes exactly the values of the whole tensor, on every platform.
void fill_normal(float* x, std::int64_t begin, std::int64_t end, double stddev, std::uint64_t seed_state) {
  for (std::int64_t pair = begin / 2; 2 * pair < end; ++pair) {
    std::uint64_t state = seed_state + static_cast<std::uint64_t>(2 * pair) * 0x9E3779B97F4A7C15ull;
    const double u1 = (static_cast<double>(splitmix64(state) >> 11) + 0.5) * 0x1p-53;
    const double u2 = static_cast<double>(splitmix64(state) >> 11) * 0x1p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
    const std::int64_t i = 2 * pair;
    if (i >= begin) x[i - begin] = static_cast<float>(r * std::cos(2 * std::numbers::pi * u2));
    if (i + 1 >= begin && i + 1 < end) x[i + 1 - begin] = static_cast<float>(r * std::sin(2 * std::numbers::pi * u2));
  }
}

}  // namespace

void Weights::initialize(std::uint64_t seed) {
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(std::max<std::int64_t>(1, num_layers_)));
  const std::int64_t stored_begin = layout_.shard_params ? shard_begin_ : 0;
  const std::int64_t stored_end = layout_.shard_params ? shard_end_ : numel_;
  for (std::size_t i = 0; i < table_.size(); ++i) {
    const ParamTensor& t = table_[i];
    // The part of tensor i stored here, in the tensor's own element numbering.
    const std::int64_t begin = std::max<std::int64_t>(0, stored_begin - offsets_[i]);
    const std::int64_t end = std::min<std::int64_t>(t.numel(), stored_end - offsets_[i]);
    if (begin >= end) continue;
    float* w = param_at(offsets_[i] + begin);
    if (t.shape.size() == 1) {
      const float value = is_norm(t) ? 1.0f : 0.0f;
      for (std::int64_t j = 0; j < end - begin; ++j) w[j] = value;
      continue;
    }
    // Each tensor's stream depends only on the seed and its name.
    const std::uint64_t state = XXH64(t.name.data(), t.name.size(), seed);
    fill_normal(w, begin, end, is_residual_projection(t.name) ? residual_std : 0.02, state);
  }
}

}  // namespace llmlab
