// The model's parameters and their gradients: two flat fp32 buffers laid out in the order of
// the parameter table (Hugging Face names and shapes, lib/spec), so checkpoints, the
// optimizer and (later) ZeRO shards all address the same offsets.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tracked_memory.hpp"
#include "spec/model_spec.hpp"

namespace llmlab {

struct ParamSlice {
  float* w = nullptr;  // into Weights::params
  float* g = nullptr;  // into Weights::grads
};

class Weights {
 public:
  Weights(const ModelSpec& spec, TrackedMemory& mem);

  const std::vector<ParamTensor>& table() const { return table_; }
  std::int64_t numel() const { return numel_; }
  float* params() const { return params_.get(); }
  float* grads() const { return grads_.get(); }
  std::int64_t offset(std::size_t tensor) const { return offsets_[tensor]; }

  // The tensor called `name`; throws Error when the model has none (an internal mismatch).
  ParamSlice get(const std::string& name) const;
  // Same, nullptr slices when absent (optional biases).
  ParamSlice find(const std::string& name) const;
  std::size_t index_of(const std::string& name) const;  // throws when absent

  // GPT-2 style initialisation, deterministic in `seed` and independent of tensor order:
  // matrices and embeddings N(0, 0.02), the projections that write into the residual stream
  // (attention output, MLP down) N(0, 0.02 / sqrt(2 L)), norm weights 1, biases 0.
  void initialize(std::uint64_t seed);

 private:
  std::vector<ParamTensor> table_;
  std::vector<std::int64_t> offsets_;
  std::unordered_map<std::string, std::size_t> index_;
  std::int64_t numel_ = 0;
  Tracked<float> params_, grads_;
  std::int64_t num_layers_ = 0;
};

}  // namespace llmlab
