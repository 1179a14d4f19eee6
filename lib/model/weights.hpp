// The model's parameters and their gradients: two flat fp32 buffers laid out in the order of
// the parameter table (Hugging Face names and shapes, lib/spec), so checkpoints, the
// optimizer and ZeRO shards all address the same offsets.
//
// Under ZeRO a rank may store only its shard of a buffer (ZeRO-3 parameters, ZeRO-2/3
// gradients): the flat range [shard_begin, shard_end) of ceil(numel / world) elements per rank.
// The model reaches tensors through bindings: where each tensor is during the current use of
// its unit (the whole buffer by default; a gathered copy or a gradient bucket under ZeRO,
// set by a ParamAccess).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tracked_memory.hpp"
#include "spec/model_spec.hpp"

namespace llmlab {

struct ParamSlice {
  float* w = nullptr;  // the tensor's values where they are now
  float* g = nullptr;  // where its gradient accumulates now (null in forward-only uses)
};

// What this rank stores.
struct WeightsLayout {
  int world = 1, rank = 0;
  bool shard_params = false;  // ZeRO-3
  bool shard_grads = false;   // ZeRO-2 and 3
};

class Weights {
 public:
  Weights(const ModelSpec& spec, TrackedMemory& mem, WeightsLayout layout = {});

  const std::vector<ParamTensor>& table() const { return table_; }
  const std::vector<ParamUnit>& units() const { return units_; }
  std::size_t unit_index(const std::string& name) const;  // throws when absent
  std::int64_t numel() const { return numel_; }
  std::int64_t offset(std::size_t tensor) const { return offsets_[tensor]; }

  const WeightsLayout& layout() const { return layout_; }
  std::int64_t shard_elements() const { return shard_; }
  std::int64_t shard_begin() const { return shard_begin_; }
  std::int64_t shard_end() const { return shard_end_; }
  bool params_sharded() const { return layout_.shard_params; }
  bool grads_sharded() const { return layout_.shard_grads; }

  // The stored buffers: the whole flat buffer, or this rank's shard (shard_elements long,
  // zero-padded past shard_end).
  float* params() const { return params_.get(); }
  float* grads() const { return grads_.get(); }
  std::int64_t params_stored() const { return params_.size(); }
  std::int64_t grads_stored() const { return grads_.size(); }
  // Flat element i in the stored buffer; i must be stored on this rank.
  float* param_at(std::int64_t i) const;
  float* grad_at(std::int64_t i) const;

  // Where tensor `tensor` is for the current use (see ParamAccess).
  void bind(std::size_t tensor, float* w, float* g) { bound_[tensor] = {w, g}; }
  const ParamSlice& bound(std::size_t tensor) const { return bound_[tensor]; }
  // Every tensor to the stored whole buffers (null where a buffer is sharded).
  void bind_stored();

  // The tensor called `name` where it is bound now; throws Error when the model has none or
  // it is not bound (an internal mismatch).
  ParamSlice get(const std::string& name) const;
  // Same, nullptr slices when absent (optional biases).
  ParamSlice find(const std::string& name) const;
  std::size_t index_of(const std::string& name) const;  // throws when absent

  // GPT-2 style initialisation of the stored parameters, deterministic in `seed` and
  // independent of tensor order and sharding (a shard holds the values the whole buffer
  // would): matrices and embeddings N(0, 0.02), the projections that write into the residual
  // stream (attention output, MLP down) N(0, 0.02 / sqrt(2 L)), norm weights 1, biases 0.
  void initialize(std::uint64_t seed);

 private:
  std::vector<ParamTensor> table_;
  std::vector<ParamUnit> units_;
  std::vector<std::int64_t> offsets_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<ParamSlice> bound_;
  std::int64_t numel_ = 0;
  WeightsLayout layout_;
  std::int64_t shard_ = 0, shard_begin_ = 0, shard_end_ = 0;
  Tracked<float> params_, grads_;
  std::int64_t num_layers_ = 0;
};

}  // namespace llmlab
