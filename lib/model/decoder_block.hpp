// One pre-norm decoder layer (GPT-2 or Llama) as stateless forward, rebuild and backward
// functions over the activation slots the Plan's block profile names (plan/activations.cpp):
// the same table that memory-plan prints decides what exists, what is kept and what is rebuilt.
#pragma once

#include <cstdint>
#include <vector>

#include "model/batch_view.hpp"
#include "model/linear.hpp"
#include "model/tracked_memory.hpp"
#include "model/weights.hpp"
#include "plan/plan.hpp"

namespace llmlab {

struct BlockParams {
  ParamSlice norm1_w, norm1_b, norm2_w, norm2_b;  // biases: LayerNorm (GPT-2) only
  Linear q, k, v, o;
  Linear fc;    // GPT-2 c_fc, Llama up_proj
  Linear gate;  // Llama gate_proj (unused for GPT-2)
  Linear down;  // GPT-2 mlp.c_proj, Llama down_proj
};

BlockParams block_params(const Weights& w, const ModelSpec& m, std::int64_t layer);

// Where each tensor of the layer lives in its BlockProfile's slot list.
struct BlockSlots {
  int input = -1, norm1_stats = -1, norm1_out = -1, q = -1, k = -1, v = -1, lse = -1, probs = -1, attn_out = -1,
      mid = -1, norm2_stats = -1, norm2_out = -1, fc = -1, up = -1, act = -1;
  // Throws Error when a slot the layer needs is missing from the profile.
  static BlockSlots of(const BlockProfile& profile, const ModelSpec& m, AttentionImpl impl);
};

using SlotPointers = std::vector<float*>;  // one per profile slot, nullptr while not live

struct BlockContext {
  Backend& be;
  const ModelSpec& model;
  const RunSettings& run;
  const BlockSlots& at;
  const BatchView& batch;
};

// Runs the layer from slots[input], writing every other slot; writes the layer's output into
// `output` unless it is null (the last layer of a segment being rebuilt: nobody reads it).
void block_forward(const BlockContext& c, const BlockParams& p, SlotPointers& s, float* output);

// Rewrites the slots a drop_core / drop_pointwise layer did not keep, from those it did;
// bit-identical to what block_forward wrote.
void block_rebuild(const BlockContext& c, const BlockParams& p, SlotPointers& s, LayerMode mode);

// Backward of the layer. dres holds d(output) and is clobbered; dinput receives d(input).
// Weight gradients accumulate. Gradient temporaries come from `mem` (category temporaries).
void block_backward(const BlockContext& c, const BlockParams& p, SlotPointers& s, float* dres, float* dinput,
                    TrackedMemory& mem);

}  // namespace llmlab
