// Assembling the Plan: model states, buffers, layers and their checkpoint decisions, the
// peak of the step timeline, and the compute estimate.
#include "plan/plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.hpp"
#include "core/units.hpp"
#include "plan/checkpoint_policy.hpp"

namespace llmlab {

const char* category_name(Category c) {
  switch (c) {
    case Category::params: return "params";
    case Category::grads: return "grads";
    case Category::optimizer: return "optimizer";
    case Category::activations: return "activations";
    case Category::loss: return "loss";
    case Category::temporaries: return "temporaries";
    case Category::comm: return "comm";
    case Category::overhead: return "overhead";
    case Category::reserve: return "reserve";
  }
  return "?";
}

const char* lifetime_name(Lifetime l) {
  switch (l) {
    case Lifetime::persistent: return "persistent";
    case Lifetime::per_step: return "per step";
    case Lifetime::per_layer: return "per layer";
  }
  return "?";
}

const char* mode_name(LayerMode m) {
  switch (m) {
    case LayerMode::keep: return "keep";
    case LayerMode::drop_core: return "drop core";
    case LayerMode::drop_pointwise: return "drop core+pointwise";
    case LayerMode::recompute: return "recompute";
  }
  return "?";
}

ModelStates model_states(std::int64_t params, std::int64_t stage, std::int64_t world, Precision precision,
                         GradDtype grads) {
  ModelStates s;
  // Flat buffers are padded to a multiple of the world size, as DeepSpeed does.
  s.shard_elements = (params + world - 1) / world;
  const bool mixed = precision != Precision::fp32;
  const std::int64_t p = mixed ? 2 : 4, g = grads == GradDtype::fp32 || !mixed ? 4 : 2;
  const std::int64_t optim_elems = stage >= 1 ? s.shard_elements : params;
  s.params_bytes = p * (stage >= 3 ? s.shard_elements : params);
  s.grads_bytes = g * (stage >= 2 ? s.shard_elements : params);
  s.master_bytes = mixed ? 4 * optim_elems : 0;
  s.adam_bytes = 8 * optim_elems;
  return s;
}

std::int64_t zero_reduce_chunk(std::int64_t params, const RunSettings& run) {
  const std::int64_t world = run.dist.world_size;
  return std::max<std::int64_t>(1, std::min(run.zero.bucket_elements,
                                             run.zero.stage >= 1 ? (params + world - 1) / world : params));
}

ZeroBuffers zero_buffers(const ParameterCounts& params, const RunSettings& run) {
  ZeroBuffers z;
  const std::int64_t world = run.dist.world_size, stage = run.zero.stage;
  if (world <= 1) return z;
  if (stage >= 3) {
    z.gather_slots = 1 + run.zero.prefetch_layers;
    z.gather_slot = params.largest_unit;
  }
  if (stage >= 2) {
    z.grad_buckets = 2;
    z.grad_bucket = params.largest_unit;
  }
  // Each rank receives every rank's copy of the elements it owns and adds them in rank order
  // (deterministic sums, lib/dist): world x its part of one chunk. Stage 0's all-reduce owns
  // ceil(chunk / world) of each chunk; stages 1-3 own at most a chunk.
  const std::int64_t chunk = zero_reduce_chunk(params.total, run);
  z.scratch = world * (stage == 0 ? (chunk + world - 1) / world : chunk);
  // Host scalars (loss and token sums, norms) are all-reduced as doubles through it too.
  z.scratch = std::max(z.scratch, 2 * world);
  return z;
}

namespace {

constexpr std::size_t idx(Category c) { return static_cast<std::size_t>(c); }

std::size_t profile_index(Plan& plan, std::map<std::string, std::size_t>& seen, const std::string& key,
                          BlockProfile (*make)(const ModelSpec&, const RunSettings&, std::int64_t), std::int64_t arg) {
  auto it = seen.find(key);
  if (it != seen.end()) return it->second;
  plan.profiles.push_back(make(plan.model, plan.run, arg));
  return seen[key] = plan.profiles.size() - 1;
}

void add_layers(Plan& plan) {
  std::map<std::string, std::size_t> seen;
  const ModelSpec& m = plan.model;
  auto add = [&](std::string name, std::size_t profile) {
    LayerPlan l;
    l.name = std::move(name);
    l.profile = profile;
    plan.layers.push_back(l);
  };
  if (m.has_vision() && plan.run.data.vision_tokens > 0) {
    const std::size_t v = profile_index(plan, seen, "vision",
                                        [](const ModelSpec& mm, const RunSettings& r, std::int64_t) {
                                          return vision_block(mm, r);
                                        }, 0);
    for (std::int64_t i = 0; i < m.vision.num_layers; ++i) add(fmt::format("vision.{}", i), v);
    add("vision.projector", profile_index(plan, seen, "projector",
                                          [](const ModelSpec& mm, const RunSettings& r, std::int64_t) {
                                            return vision_projector(mm, r);
                                          }, 0));
  }
  for (std::int64_t i = 0; i < m.num_layers; ++i)
    add(fmt::format("decoder.{}", i), profile_index(plan, seen, m.layer_is_moe(i) ? "moe" : "dense", decoder_block, i));
  for (std::int64_t k = 0; k < m.mtp_depth; ++k)
    add(fmt::format("mtp.{}", k),
        profile_index(plan, seen, m.layer_is_moe(m.num_layers + k) ? "mtp-moe" : "mtp-dense", mtp_module, k));
}

void add_buffers(Plan& plan) {
  const RunSettings& r = plan.run;
  const bool mixed = r.train.precision != Precision::fp32;
  const std::int64_t world = r.dist.world_size, stage = r.zero.stage;
  const std::string shard = stage >= 1 && world > 1 ? fmt::format(", 1/{} shard", world) : "";
  const char* pdt = mixed ? (r.train.precision == Precision::fp16_mixed ? "fp16" : "bf16") : "fp32";
  const ModelStates& s = plan.states;
  auto add = [&](std::string name, Category c, Lifetime l, std::int64_t bytes) {
    if (bytes > 0) plan.buffers.push_back({std::move(name), c, l, bytes});
  };
  add(fmt::format("parameters ({}{})", pdt, stage >= 3 ? shard : ""), Category::params, Lifetime::persistent,
      s.params_bytes);
  add(fmt::format("gradients ({}{})", grad_dtype_name(r.train.grad_dtype), stage >= 2 ? shard : ""), Category::grads,
      Lifetime::persistent, s.grads_bytes);
  add(fmt::format("fp32 master weights{}", shard), Category::optimizer, Lifetime::persistent, s.master_bytes);
  add(fmt::format("AdamW m and v (fp32{})", shard), Category::optimizer, Lifetime::persistent, s.adam_bytes);

  const ZeroBuffers z = zero_buffers(plan.params, r);
  const std::int64_t g = s.grads_bytes / std::max<std::int64_t>(1, stage >= 2 ? s.shard_elements : plan.params.total);
  const std::int64_t unit = plan.params.largest_unit;
  add(fmt::format("ZeRO-3 gather buffers ({} x largest unit, {} params)", z.gather_slots,
                  format_short_count(static_cast<double>(unit))),
      Category::comm, Lifetime::persistent, z.gather_slots * z.gather_slot * (mixed ? 2 : 4));
  add(fmt::format("gradient buckets ({} x largest unit)", z.grad_buckets), Category::comm, Lifetime::persistent,
      z.grad_buckets * z.grad_bucket * g);
  add(fmt::format("reduction scratch ({} ranks x {} elements)", world, format_short_count(static_cast<double>(z.scratch / std::max<std::int64_t>(1, world)))),
      Category::comm, Lifetime::persistent, z.scratch * g);
  add(r.hardware.device == Device::cuda ? "runtime overhead (CUDA context)" : "runtime overhead", Category::overhead,
      Lifetime::persistent, r.hardware.runtime_overhead);
  add("inputs (tokens, targets, positions, mask, cu_seqlens)", Category::activations, Lifetime::per_step,
      input_bytes(plan.model, r));
  add("residual-stream gradients (2 x [T, h])", Category::temporaries, Lifetime::per_step, residual_grad_bytes(plan));
}

std::int64_t persistent_bytes(const Plan& plan) {
  std::int64_t n = 0;
  for (const auto& b : plan.buffers)
    if (b.lifetime == Lifetime::persistent) n += b.bytes;
  return n;
}

void estimate_compute(Plan& plan) {
  Compute& c = plan.compute;
  const RunSettings& r = plan.run;
  for (const auto& l : plan.layers) {
    const BlockProfile& p = plan.profiles[l.profile];
    c.forward_flops += p.forward_flops;
    c.backward_flops += p.backward_flops;
    c.recompute_flops += l.recompute_flops;
  }
  c.forward_flops += plan.head.forward_flops;
  c.backward_flops += plan.head.backward_flops;
  const double gas = static_cast<double>(r.train.gradient_accumulation_steps);
  c.step_flops = gas * (c.forward_flops + c.backward_flops + c.recompute_flops);
  c.compute_seconds = c.step_flops / (r.hardware.peak_tflops * 1e12 * r.hardware.mfu);

  // Bytes each rank sends with ring collectives: all-reduce 2(N-1)/N, reduce-scatter and
  // all-gather (N-1)/N of the buffer. Stages 0-1 reduce accumulated gradients once per step;
  // stage 2 reduce-scatters every micro-step; stage 3 also gathers parameters for each
  // micro-step's forward and backward.
  const double N = static_cast<double>(r.dist.world_size), psi = static_cast<double>(plan.params.total);
  const double ring = (N - 1) / N;
  const double pb = r.train.precision == Precision::fp32 ? 4 : 2;
  const double gb = static_cast<double>(plan.states.grads_bytes) / std::max(1.0, static_cast<double>(
                        r.zero.stage >= 2 ? plan.states.shard_elements : plan.params.total));
  switch (r.zero.stage) {
    case 0: c.comm_bytes = 2 * ring * psi * gb; break;
    case 1: c.comm_bytes = ring * psi * (gb + pb); break;
    case 2: c.comm_bytes = ring * psi * (gas * gb + pb); break;
    default: c.comm_bytes = gas * ring * psi * (2 * pb + gb); break;
  }
  c.comm_seconds = c.comm_bytes / (r.hardware.interconnect_gbps * 1e9);
  const double hidden = std::min(c.comm_seconds * r.hardware.comm_overlap, c.compute_seconds);
  c.step_seconds = c.compute_seconds + c.comm_seconds - hidden;
  c.tokens_per_step = static_cast<double>(r.train.micro_batch_size * r.data.packing_length) * gas * N;
  c.tokens_per_second = c.step_seconds > 0 ? c.tokens_per_step / c.step_seconds : 0;
}

// Byte counts are int64. Before planning, an upper estimate in doubles makes sure no count of
// an absurd configuration (a micro-batch of 1e15 rows, a 2^20-wide model) can overflow: such
// a recipe is bad input, not a plan.
void check_plannable(const ModelSpec& m, const RunSettings& r) {
  const double h = static_cast<double>(m.hidden_size), L = static_cast<double>(m.num_layers + m.mtp_depth);
  const double qk = static_cast<double>(m.is_mla() ? m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim : m.head_dim);
  const double v = static_cast<double>(m.is_mla() ? m.mla.v_head_dim : m.head_dim);
  const double heads = static_cast<double>(m.num_heads + 2 * m.num_kv_heads + 1);
  const double lora = static_cast<double>(m.mla.kv_lora_rank + m.mla.q_lora_rank + m.mla.qk_rope_head_dim);
  const double experts = static_cast<double>(m.moe.num_experts + m.moe.num_shared_experts);
  const double mlp_width = static_cast<double>(m.intermediate_size) +
                           experts * static_cast<double>(m.moe.expert_intermediate_size);
  const double vision = static_cast<double>(m.vision.num_layers) * 16 * static_cast<double>(m.vision.hidden_size) *
                        static_cast<double>(m.vision.hidden_size + m.vision.intermediate_size);
  const double params = L * (4 * h * (heads * std::max(qk, v) + lora) + 4 * h * mlp_width + 4 * h * experts) +
                        4 * static_cast<double>(m.vocab_size + m.max_position_embeddings) * h + vision;
  // 2^58 bytes at 18 bytes/param leaves a factor of 8 below int64's range for the sums.
  if (params * 18 > 0x1p58)
    throw InputError(fmt::format("the model is too large to plan (~{:.3g} parameters): check model.* sizes", params));
  const double rows = static_cast<double>(r.train.micro_batch_size), s = static_cast<double>(r.data.packing_length);
  const double T = rows * s, Tv = rows * static_cast<double>(r.data.vision_tokens);
  const double per_token = 64 * (h + mlp_width + heads * std::max(qk, v) + lora) +
                           8 * static_cast<double>(m.moe.top_k) * (h + mlp_width);
  const double activations = T * L * per_token + 8 * T * static_cast<double>(m.vocab_size) * (1 + L) +
                             8 * rows * static_cast<double>(m.num_heads) * s * s * L +
                             Tv * 64 * static_cast<double>(m.vision.num_layers) *
                                 (static_cast<double>(m.vision.hidden_size + m.vision.intermediate_size) +
                                  static_cast<double>(m.vision.num_heads) * static_cast<double>(r.data.vision_tokens));
  if (activations > 0x1p58)
    throw InputError(fmt::format(
        "train.micro_batch_size x data.packing_length = {:.3g} tokens per micro-batch: activations of ~{:.3g} bytes "
        "per rank are beyond anything that can run, too large to plan",
        T, activations));
}

}  // namespace

Plan make_plan(const ModelSpec& model, const RunSettings& run) {
  check_plannable(model, run);
  Plan plan;
  plan.model = model;
  plan.run = run;
  plan.params = count_parameters(model);
  plan.states = model_states(plan.params.total, run.zero.stage, run.dist.world_size, run.train.precision,
                             run.train.grad_dtype);
  plan.head = output_head(model, run);
  add_buffers(plan);
  add_layers(plan);

  // What the budget policy may fill: device memory less the reserve, model states,
  // communication buffers and runtime overhead.
  const double reserve = run.hardware.allocator_reserve;
  const std::int64_t memory = static_cast<std::int64_t>(run.hardware.memory);
  std::int64_t step_budget = static_cast<std::int64_t>(run.checkpointing.budget);
  if (step_budget == 0)
    step_budget = static_cast<std::int64_t>(static_cast<double>(memory) / (1 + reserve)) - persistent_bytes(plan);
  apply_checkpoint_policy(plan, step_budget);

  const StepPeak step = simulate_step(plan);
  plan.peak_phase = step.phase;
  for (const auto& b : plan.buffers)
    if (b.lifetime == Lifetime::persistent) plan.peak_parts.push_back({b.name, b.category, b.bytes});
  plan.peak_parts.insert(plan.peak_parts.end(), step.parts.begin(), step.parts.end());
  std::int64_t total = 0;
  for (const auto& p : plan.peak_parts) total += p.bytes;
  const auto reserved = static_cast<std::int64_t>(std::ceil(static_cast<double>(total) * reserve));
  if (reserved > 0)
    plan.peak_parts.push_back({fmt::format("allocator reserve ({:g}%)", 100 * reserve), Category::reserve, reserved});
  for (const auto& p : plan.peak_parts) plan.at_peak[idx(p.category)] += p.bytes;
  plan.peak_bytes = total + reserved;
  plan.memory_limit = memory;
  plan.fits = plan.peak_bytes <= memory;
  estimate_compute(plan);
  return plan;
}

}  // namespace llmlab
