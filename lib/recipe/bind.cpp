// Binding raw entries to typed settings, resolving derived defaults, and checking the
// contradictions no single key can reveal.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/text.hpp"
#include "core/units.hpp"
#include "recipe/recipe.hpp"
#include "recipe/schema.hpp"

namespace llmlab {

bool Recipe::has_model() const {
  for (const auto& [key, where] : sources)
    if (key.rfind("model.", 0) == 0) return true;
  return false;
}

void require_model(const Recipe& r) {
  if (!r.has_model())
    throw InputError(SourceLoc{r.path, 0, 0}, "model",
                     "no model: add `defaults: [models/<preset>.yaml]`, a model section, or model.hf_config");
}

SourceLoc Recipe::locate(const std::string& key) const {
  const SourceLoc w = where(key);
  return w.known() ? w : SourceLoc{path, 0, 0};
}

SourceLoc Recipe::where(const std::string& key) const {
  auto it = sources.find(key);
  return it == sources.end() ? SourceLoc{} : it->second;
}

namespace {

std::string section_of(const std::string& key) { return key.substr(0, key.find('.')); }

[[noreturn]] void unknown_key(const std::string& key, const RawEntry& entry) {
  std::vector<std::string> keys;
  std::set<std::string> sections;
  bool is_section = false;
  for (const auto& f : recipe_schema()) {
    keys.push_back(f.key);
    sections.insert(section_of(f.key));
    if (f.key.compare(0, key.size() + 1, key + ".") == 0) is_section = true;
  }
  if (is_section) throw InputError(entry.where, key, "is a section: expected a mapping of keys under it");
  if (!sections.count(section_of(key))) {
    std::vector<std::string> names(sections.begin(), sections.end());
    std::string msg = fmt::format("unknown section '{}' (sections: {})", section_of(key), join(names, ", "));
    const std::string guess = closest_match(section_of(key), names);
    if (!guess.empty()) msg += fmt::format("; did you mean '{}'?", guess);
    throw InputError(entry.where, key, msg);
  }
  std::string msg = "unknown key";
  const std::string guess = closest_match(key, keys);
  if (!guess.empty()) msg += fmt::format("; did you mean '{}'?", guess);
  else msg += fmt::format(" (memory-plan --list-keys shows every key of '{}')", section_of(key));
  throw InputError(entry.where, key, msg);
}

void warn(Recipe& r, const std::string& key, const std::string& what) {
  const SourceLoc w = r.locate(key);
  r.warnings.push_back(fmt::format("{}: {}: {}", w.str(), key, what));
}

void resolve_model(Recipe& r) {
  ModelSpec& m = r.model;
  if (!r.is_set("model.hidden_size") || !r.is_set("model.num_layers") || !r.is_set("model.vocab_size") ||
      !r.is_set("model.num_heads"))
    throw InputError(SourceLoc{r.path, 0, 0}, "model",
                     "incomplete model: vocab_size, hidden_size, num_layers and num_heads are required");
  if (!r.is_set("model.intermediate_size") && !m.is_moe())
    throw InputError(r.locate("model.hidden_size"), "model.intermediate_size", "missing: the MLP width is required");
  if (m.is_mla()) {
    m.num_kv_heads = m.num_heads;  // MLA expands the latent to full heads
  } else if (m.num_kv_heads == 0) {
    m.num_kv_heads = m.num_heads;
  }
  if (m.head_dim == 0) {
    if (m.hidden_size % m.num_heads != 0)
      throw InputError(r.locate("model.num_heads"), "model.num_heads",
                       fmt::format("num_heads ({}) does not divide hidden_size ({}); set model.head_dim to allow it",
                                   m.num_heads, m.hidden_size));
    m.head_dim = m.hidden_size / m.num_heads;
  }
  if (m.num_heads % m.num_kv_heads != 0)
    throw InputError(r.locate("model.num_kv_heads"), "model.num_kv_heads",
                     fmt::format("num_kv_heads ({}) must divide num_heads ({})", m.num_kv_heads, m.num_heads));
  if (m.is_moe()) {
    if (m.moe.expert_intermediate_size == 0)
      throw InputError(r.locate("model.moe.num_experts"), "model.moe.expert_intermediate_size",
                       "required when model.moe.num_experts > 0");
    if (m.moe.top_k < 1 || m.moe.top_k > m.moe.num_experts)
      throw InputError(r.locate("model.moe.top_k"), "model.moe.top_k",
                       fmt::format("must be in [1, num_experts = {}] (got {})", m.moe.num_experts, m.moe.top_k));
    if (m.moe.first_dense_layers > 0 && m.intermediate_size == 0)
      throw InputError(r.locate("model.moe.first_dense_layers"), "model.intermediate_size",
                       "required for the dense layers before the first MoE layer");
  }
  if (m.is_mla() && (m.mla.qk_nope_head_dim <= 0 || m.mla.qk_rope_head_dim <= 0 || m.mla.v_head_dim <= 0))
    throw InputError(r.locate("model.mla.kv_lora_rank"), "model.mla",
                     "multi-head latent attention needs qk_nope_head_dim, qk_rope_head_dim and v_head_dim");
  if (m.is_mla() && m.arch == Arch::gpt2)
    throw InputError(r.locate("model.mla.kv_lora_rank"), "model.mla", "latent attention needs arch: llama");
  if (m.is_moe() && m.arch == Arch::gpt2)
    throw InputError(r.locate("model.moe.num_experts"), "model.moe", "mixture of experts needs arch: llama");
  if (m.has_vision()) {
    const auto& v = m.vision;
    if (v.hidden_size <= 0 || v.num_heads <= 0 || v.intermediate_size <= 0)
      throw InputError(r.locate("model.vision.num_layers"), "model.vision",
                       "a vision encoder needs hidden_size, num_heads and intermediate_size");
    if (v.hidden_size % v.num_heads != 0)
      throw InputError(r.locate("model.vision.num_heads"), "model.vision.num_heads",
                       fmt::format("num_heads ({}) does not divide hidden_size ({})", v.num_heads, v.hidden_size));
  }
}

void resolve_settings(Recipe& r) {
  const ModelSpec& m = r.model;
  // Unset, the row length is 2048 or the model's context if shorter (GPT-2: 1024).
  if (!r.is_set("data.packing_length")) r.data.packing_length = std::min<std::int64_t>(2048, m.max_position_embeddings);
  // Like every path, the default output directory is stored absolute (here: ./packed).
  if (!r.is_set("data.output")) r.data.output = std::filesystem::absolute(r.data.output).lexically_normal().string();
  // train's run directory defaults to ./runs/<model name>.
  if (!r.is_set("output.dir"))
    r.output.dir = (std::filesystem::absolute("runs") / (m.name.empty() ? "default" : m.name)).lexically_normal().string();
  if (r.train.precision == Precision::fp32) {
    if (r.is_set("train.grad_dtype") && r.train.grad_dtype == GradDtype::bf16)
      throw InputError(r.locate("train.grad_dtype"), "train.grad_dtype",
                       "bf16 gradients contradict train.precision: fp32");
    r.train.grad_dtype = GradDtype::fp32;
  }
  if (r.has_model() && r.data.packing_length > m.max_position_embeddings) {
    if (m.arch == Arch::gpt2)
      throw InputError(r.locate("data.packing_length"), "data.packing_length",
                       fmt::format("{} exceeds the learned position table (model.max_position_embeddings = {})",
                                   r.data.packing_length, m.max_position_embeddings));
    warn(r, "data.packing_length",
         fmt::format("{} exceeds model.max_position_embeddings ({}): RoPE will extrapolate", r.data.packing_length,
                     m.max_position_embeddings));
  }
  // Global batch arithmetic (rows x accumulation x ranks, then x tokens) must stay exact.
  const double global_rows = static_cast<double>(r.train.micro_batch_size) *
                             static_cast<double>(r.train.gradient_accumulation_steps) *
                             static_cast<double>(r.dist.world_size);
  if (global_rows * static_cast<double>(r.data.packing_length) > 0x1p53)
    throw InputError(r.locate("train.micro_batch_size"), "train.micro_batch_size",
                     fmt::format("micro_batch_size x gradient_accumulation_steps x world_size x packing_length = "
                                 "{:.3g} tokens per step is beyond anything that can run",
                                 global_rows * static_cast<double>(r.data.packing_length)));
  if (r.data.vision_tokens > 0 && !m.has_vision())
    throw InputError(r.locate("data.vision_tokens"), "data.vision_tokens", "the model has no vision encoder");
  if (r.data.vision_tokens % std::max<std::int64_t>(1, m.vision.merge) != 0)
    throw InputError(r.locate("data.vision_tokens"), "data.vision_tokens",
                     fmt::format("must be a multiple of model.vision.merge ({})", m.vision.merge));
  if (r.checkpointing.policy == CheckpointPolicy::every_k && r.checkpointing.every_k > m.num_layers)
    throw InputError(r.locate("checkpointing.every_k"), "checkpointing.every_k",
                     fmt::format("{} exceeds the model's {} layers", r.checkpointing.every_k, m.num_layers));
  if (r.zero.stage > 0 && r.dist.world_size == 1)
    warn(r, "zero.stage", fmt::format("ZeRO-{} on a single rank shards nothing (dist.world_size = 1)", r.zero.stage));
  if (r.hardware.device == Device::cpu && r.train.precision != Precision::fp32)
    warn(r, "train.precision", "the CPU backend trains in fp32; this plan follows the recipe's 16-bit precision");

  HardwareSettings& h = r.hardware;
  const bool cuda = h.device == Device::cuda;
  // Defaults: an H100 SXM 80GB for cuda (bf16 dense peak 989 TFLOP/s); for cpu, oneDNN's
  // sgemm measured on this project's 2-core machines (~0.35 TFLOP/s).
  if (h.memory == 0 && !h.memory_auto) {
    if (cuda)
      h.memory = 80 * GiB;
    else
      h.memory_auto = true;
  }
  if (h.peak_tflops == 0) h.peak_tflops = cuda ? 989.0 : 0.35;
  if (h.interconnect_gbps == 0) h.interconnect_gbps = cuda ? 100.0 : 10.0;
  if (h.runtime_overhead < 0) h.runtime_overhead = cuda ? static_cast<std::int64_t>(400 * MiB) : 0;
  if (h.allocator_reserve < 0) h.allocator_reserve = cuda ? 0.05 : 0.0;
  if (h.mfu <= 0) throw InputError(r.locate("hardware.mfu"), "hardware.mfu", "must be > 0");
}

}  // namespace

Recipe bind_recipe(const RawConfig& raw) {
  Recipe r;
  r.path = raw.path;
  for (const auto& [key, entry] : raw.entries) {
    const Field* f = find_field(key);
    if (!f) unknown_key(key, entry);
    f->assign(r, entry.value, entry.where);
    r.sources[key] = entry.where;
  }
  // A recipe may have no model at all (pack-data needs none); tools that do call require_model.
  if (r.has_model()) resolve_model(r);
  resolve_settings(r);
  return r;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  RawConfig raw = load_raw_config(path);
  for (const auto& o : overrides) apply_override(raw, o);
  return bind_recipe(raw);
}

}  // namespace llmlab
