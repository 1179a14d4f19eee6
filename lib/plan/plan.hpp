// The Plan: every buffer one training step needs on one rank — model states sharded by the
// ZeRO stage, per-layer activations kept or recomputed by the checkpointing policy, loss and
// gradient temporaries, communication buffers, runtime overhead — the moment memory peaks,
// and the FLOPs and estimated time of a step. memory-plan prints it; train allocates from it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "plan/activations.hpp"
#include "spec/model_spec.hpp"
#include "spec/settings.hpp"

namespace llmlab {

enum class Category { params, grads, optimizer, activations, loss, temporaries, comm, overhead, reserve };
constexpr std::size_t kCategories = 9;
const char* category_name(Category c);

enum class Lifetime { persistent, per_step, per_layer };
const char* lifetime_name(Lifetime l);

struct Buffer {
  std::string name;
  Category category;
  Lifetime lifetime;
  std::int64_t bytes;
};

// What a layer keeps from forward to backward.
enum class LayerMode {
  keep,            // every slot
  drop_core,       // all but the attention core (selective, Megatron)
  drop_pointwise,  // also drops norm and activation-function outputs
  recompute,       // only the input of its segment; the segment's forward runs again in backward
};
const char* mode_name(LayerMode m);

struct LayerPlan {
  std::string name;  // "decoder.3", "vision.0", "mtp.0"
  std::size_t profile = 0;  // index into Plan::profiles
  LayerMode mode = LayerMode::keep;
  std::size_t segment = 0;  // first layer of its recompute segment (itself unless every_k/sqrt)
  std::int64_t kept_bytes = 0;     // held from its forward to its backward
  std::int64_t kept_loss_bytes = 0;  // the part of kept_bytes that is logits/loss (MTP)
  std::int64_t rebuilt_bytes = 0;  // recomputed during backward
  double recompute_flops = 0;
};

// Whether `mode` keeps `slot` of a layer that starts its own segment (`segment_start`).
bool keeps_slot(LayerMode mode, const Slot& slot, bool segment_start);

struct ModelStates {
  std::int64_t shard_elements = 0;  // ceil(params / world) per rank
  std::int64_t params_bytes = 0;
  std::int64_t grads_bytes = 0;
  std::int64_t master_bytes = 0;  // fp32 master copy (mixed precision only)
  std::int64_t adam_bytes = 0;    // m and v
  std::int64_t total() const { return params_bytes + grads_bytes + master_bytes + adam_bytes; }
};

// Per-rank model-state bytes for `params` parameters under ZeRO `stage` over `world` ranks:
// the ZeRO paper's 2+2+12 bytes/param (mixed) sharded stage by stage.
ModelStates model_states(std::int64_t params, std::int64_t stage, std::int64_t world, Precision precision,
                         GradDtype grads);

// Communication buffers of one rank, in elements; train's ZeRO engine allocates exactly these.
struct ZeroBuffers {
  std::int64_t gather_slots = 0;    // stage 3: 1 + zero.prefetch_layers units gathered at once
  std::int64_t gather_slot = 0;     //   each the largest unit
  std::int64_t grad_buckets = 0;    // stages 2-3: a unit's gradients reduce while the next fills
  std::int64_t grad_bucket = 0;     //   each the largest unit
  std::int64_t scratch = 0;         // world > 1: where a reduction receives the world's contributions
  std::int64_t total() const { return gather_slots * gather_slot + grad_buckets * grad_bucket + scratch; }
};

// Reductions are issued in chunks of at most `chunk` elements: zero.bucket_elements, and no
// more than a shard (stages 1-3) or the whole buffer (stage 0).
std::int64_t zero_reduce_chunk(std::int64_t params, const RunSettings& run);
ZeroBuffers zero_buffers(const ParameterCounts& params, const RunSettings& run);

struct Compute {
  // One micro-batch on one rank.
  double forward_flops = 0, backward_flops = 0, recompute_flops = 0;
  // One optimizer step on one rank.
  double step_flops = 0;
  double compute_seconds = 0;
  double comm_bytes = 0;  // bytes each rank sends per step
  double comm_seconds = 0;
  double step_seconds = 0;        // compute plus the communication not hidden behind it
  double tokens_per_step = 0;     // global
  double tokens_per_second = 0;   // global
};

// One named contribution to the peak (a buffer, or a group of activations live at that moment).
struct PeakPart {
  std::string name;
  Category category;
  std::int64_t bytes;
};

struct Plan {
  ModelSpec model;
  RunSettings run;
  ParameterCounts params;
  ModelStates states;
  std::vector<Buffer> buffers;           // persistent and per-step buffers (not layer slots)
  std::vector<BlockProfile> profiles;    // one per distinct block shape
  std::vector<LayerPlan> layers;         // forward order: vision, projector, decoder, MTP
  BlockProfile head;                     // final norm, logits, loss
  std::int64_t segment_length = 1;       // every_k / sqrt segment length
  std::int64_t activation_budget = 0;    // budget policy: bytes it filled

  std::vector<PeakPart> peak_parts;                 // what is live when memory peaks
  std::array<std::int64_t, kCategories> at_peak{};  // the same, summed by category
  std::int64_t peak_bytes = 0;
  std::string peak_phase;
  std::int64_t memory_limit = 0;
  bool fits = false;
  Compute compute;

  std::int64_t bytes(Category c) const { return at_peak[static_cast<std::size_t>(c)]; }
  std::int64_t model_states_bytes() const {
    return bytes(Category::params) + bytes(Category::grads) + bytes(Category::optimizer);
  }
  // Layer activations and loss tensors at the peak.
  std::int64_t activations_bytes() const { return bytes(Category::activations) + bytes(Category::loss); }
};

// Builds the plan. `run.hardware.memory` must already be resolved (non-zero).
Plan make_plan(const ModelSpec& model, const RunSettings& run);

}  // namespace llmlab
