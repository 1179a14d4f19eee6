// The parameter table: every tensor of a ModelSpec by its Hugging Face name and shape.
#include "spec/model_spec.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>

namespace llmlab {

bool ModelSpec::layer_is_moe(std::int64_t layer) const {
  // DeepSeek-V3 rule: layer >= first_k_dense_replace and layer % moe_layer_freq == 0.
  return is_moe() && layer >= moe.first_dense_layers && layer % std::max<std::int64_t>(1, moe.layer_freq) == 0;
}

std::int64_t ParamTensor::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const char* arch_name(Arch arch) { return arch == Arch::gpt2 ? "gpt2" : "llama"; }

namespace {

// Appends tensors for one group/unit with a shared name prefix.
class TableBuilder {
 public:
  explicit TableBuilder(std::vector<ParamTensor>& out) : out_(out) {}

  void begin(ParamGroup group, std::int64_t unit, std::string prefix) {
    group_ = group;
    unit_ = unit;
    prefix_ = std::move(prefix);
  }
  // A weight matrix (decayed) and, when `bias`, its bias vector.
  void linear(const std::string& name, std::int64_t out_features, std::int64_t in_features, bool bias,
              std::int64_t expert = -1) {
    add(name + ".weight", {out_features, in_features}, true, expert);
    if (bias) add(name + ".bias", {out_features}, false, expert);
  }
  // GPT-2's Conv1D stores weights as [in, out].
  void conv1d(const std::string& name, std::int64_t in_features, std::int64_t out_features, bool bias) {
    add(name + ".weight", {in_features, out_features}, true, -1);
    if (bias) add(name + ".bias", {out_features}, false, -1);
  }
  void norm(const std::string& name, std::int64_t width, bool bias) {
    add(name + ".weight", {width}, false, -1);
    if (bias) add(name + ".bias", {width}, false, -1);
  }
  void add(const std::string& name, std::vector<std::int64_t> shape, bool decay, std::int64_t expert) {
    out_.push_back({prefix_ + name, std::move(shape), group_, unit_, expert, decay});
  }

 private:
  std::vector<ParamTensor>& out_;
  ParamGroup group_ = ParamGroup::layer;
  std::int64_t unit_ = -1;
  std::string prefix_;
};

void add_llama_attention(TableBuilder& t, const ModelSpec& s) {
  const std::int64_t h = s.hidden_size;
  if (s.is_mla()) {
    const auto& m = s.mla;
    const std::int64_t qk_dim = m.qk_nope_head_dim + m.qk_rope_head_dim;
    if (m.q_lora_rank > 0) {
      t.linear("self_attn.q_a_proj", m.q_lora_rank, h, s.qkv_bias);
      t.norm("self_attn.q_a_layernorm", m.q_lora_rank, false);
      t.linear("self_attn.q_b_proj", s.num_heads * qk_dim, m.q_lora_rank, false);
    } else {
      t.linear("self_attn.q_proj", s.num_heads * qk_dim, h, false);
    }
    t.linear("self_attn.kv_a_proj_with_mqa", m.kv_lora_rank + m.qk_rope_head_dim, h, s.qkv_bias);
    t.norm("self_attn.kv_a_layernorm", m.kv_lora_rank, false);
    t.linear("self_attn.kv_b_proj", s.num_heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank,
             false);
    t.linear("self_attn.o_proj", h, s.num_heads * m.v_head_dim, s.o_bias);
    return;
  }
  t.linear("self_attn.q_proj", s.num_heads * s.head_dim, h, s.qkv_bias);
  t.linear("self_attn.k_proj", s.num_kv_heads * s.head_dim, h, s.qkv_bias);
  t.linear("self_attn.v_proj", s.num_kv_heads * s.head_dim, h, s.qkv_bias);
  t.linear("self_attn.o_proj", h, s.num_heads * s.head_dim, s.o_bias);
  if (s.qk_norm) {
    t.norm("self_attn.q_norm", s.head_dim, false);
    t.norm("self_attn.k_norm", s.head_dim, false);
  }
}

void add_llama_mlp(TableBuilder& t, const ModelSpec& s, std::int64_t layer) {
  const std::int64_t h = s.hidden_size;
  if (!s.layer_is_moe(layer)) {
    t.linear("mlp.gate_proj", s.intermediate_size, h, s.mlp_bias);
    t.linear("mlp.up_proj", s.intermediate_size, h, s.mlp_bias);
    t.linear("mlp.down_proj", h, s.intermediate_size, s.mlp_bias);
    return;
  }
  const auto& m = s.moe;
  t.add("mlp.gate.weight", {m.num_experts, h}, true, -1);
  if (m.router_bias) t.add("mlp.gate.e_score_correction_bias", {m.num_experts}, false, -1);
  for (std::int64_t e = 0; e < m.num_experts; ++e) {
    const std::string p = fmt::format("mlp.experts.{}.", e);
    t.linear(p + "gate_proj", m.expert_intermediate_size, h, false, e);
    t.linear(p + "up_proj", m.expert_intermediate_size, h, false, e);
    t.linear(p + "down_proj", h, m.expert_intermediate_size, false, e);
  }
  if (m.num_shared_experts > 0) {
    const std::int64_t width = m.num_shared_experts * m.expert_intermediate_size;
    t.linear("mlp.shared_experts.gate_proj", width, h, false);
    t.linear("mlp.shared_experts.up_proj", width, h, false);
    t.linear("mlp.shared_experts.down_proj", h, width, false);
  }
}

void add_llama_layer(TableBuilder& t, const ModelSpec& s, std::int64_t layer) {
  add_llama_attention(t, s);
  add_llama_mlp(t, s, layer);
  t.norm("input_layernorm", s.hidden_size, false);
  t.norm("post_attention_layernorm", s.hidden_size, false);
}

void add_gpt2(std::vector<ParamTensor>& out, const ModelSpec& s) {
  TableBuilder t(out);
  const std::int64_t h = s.hidden_size;
  t.begin(ParamGroup::embedding, -1, "transformer.");
  t.add("wte.weight", {s.vocab_size, h}, false, -1);
  t.add("wpe.weight", {s.max_position_embeddings, h}, false, -1);
  const std::int64_t qkv = (s.num_heads + 2 * s.num_kv_heads) * s.head_dim;
  for (std::int64_t i = 0; i < s.num_layers; ++i) {
    t.begin(ParamGroup::layer, i, fmt::format("transformer.h.{}.", i));
    t.norm("ln_1", h, true);
    t.conv1d("attn.c_attn", h, qkv, s.qkv_bias);
    t.conv1d("attn.c_proj", s.num_heads * s.head_dim, h, s.o_bias);
    t.norm("ln_2", h, true);
    t.conv1d("mlp.c_fc", h, s.intermediate_size, s.mlp_bias);
    t.conv1d("mlp.c_proj", s.intermediate_size, h, s.mlp_bias);
  }
  t.begin(ParamGroup::final_norm, -1, "transformer.");
  t.norm("ln_f", h, true);
  if (!s.tie_embeddings) {
    t.begin(ParamGroup::lm_head, -1, "");
    t.add("lm_head.weight", {s.vocab_size, h}, true, -1);
  }
}

void add_llama(std::vector<ParamTensor>& out, const ModelSpec& s) {
  TableBuilder t(out);
  const std::int64_t h = s.hidden_size;
  t.begin(ParamGroup::embedding, -1, "model.");
  t.add("embed_tokens.weight", {s.vocab_size, h}, false, -1);
  for (std::int64_t i = 0; i < s.num_layers; ++i) {
    t.begin(ParamGroup::layer, i, fmt::format("model.layers.{}.", i));
    add_llama_layer(t, s, i);
  }
  // DeepSeek-V3 MTP modules follow the decoder layers and share embedding and output head.
  for (std::int64_t k = 0; k < s.mtp_depth; ++k) {
    const std::int64_t index = s.num_layers + k;
    t.begin(ParamGroup::mtp, k, fmt::format("model.layers.{}.", index));
    t.norm("enorm", h, false);
    t.norm("hnorm", h, false);
    t.linear("eh_proj", h, 2 * h, false);
    add_llama_layer(t, s, index);
    t.norm("shared_head.norm", h, false);
  }
  t.begin(ParamGroup::final_norm, -1, "model.");
  t.norm("norm", h, false);
  if (!s.tie_embeddings) {
    t.begin(ParamGroup::lm_head, -1, "");
    t.add("lm_head.weight", {s.vocab_size, h}, true, -1);
  }
}

void add_vision(std::vector<ParamTensor>& out, const ModelSpec& s) {
  TableBuilder t(out);
  const auto& v = s.vision;
  const std::int64_t w = v.hidden_size;
  t.begin(ParamGroup::vision, -1, "vision_tower.");
  t.add("patch_embed.proj.weight", {w, v.num_channels, v.patch_size, v.patch_size}, true, -1);
  t.add("patch_embed.proj.bias", {w}, false, -1);
  t.add("patch_embed.pos_emb.weight", {v.position_table, w}, false, -1);
  for (std::int64_t i = 0; i < v.num_layers; ++i) {
    t.begin(ParamGroup::vision, i, fmt::format("vision_tower.encoder.blocks.{}.", i));
    t.norm("norm0", w, true);
    t.norm("norm1", w, true);
    t.linear("wqkv", 3 * w, w, true);
    t.linear("wo", w, w, true);
    t.linear("mlp.fc0", v.intermediate_size, w, true);
    t.linear("mlp.fc1", w, v.intermediate_size, true);
  }
  t.begin(ParamGroup::vision, -1, "vision_tower.encoder.");
  t.norm("final_layernorm", w, true);
  const std::int64_t merged = w * v.merge;
  t.begin(ParamGroup::projector, -1, "multi_modal_projector.");
  t.norm("pre_norm", w, true);
  t.linear("linear_1", merged, merged, true);
  t.linear("linear_2", s.hidden_size, merged, true);
}

}  // namespace

std::vector<ParamTensor> parameter_table(const ModelSpec& spec) {
  std::vector<ParamTensor> out;
  if (spec.has_vision()) add_vision(out, spec);
  if (spec.arch == Arch::gpt2)
    add_gpt2(out, spec);
  else
    add_llama(out, spec);
  return out;
}

std::vector<ParamUnit> parameter_units(const ModelSpec& spec, const std::vector<ParamTensor>& table) {
  std::vector<ParamUnit> units;
  auto is_head = [](ParamGroup g) { return g == ParamGroup::final_norm || g == ParamGroup::lm_head; };
  auto unit_name = [](const ParamTensor& t) -> std::string {
    switch (t.group) {
      case ParamGroup::embedding: return "embedding";
      case ParamGroup::layer: return fmt::format("decoder.{}", t.unit);
      case ParamGroup::mtp: return fmt::format("mtp.{}", t.unit);
      case ParamGroup::vision: return t.unit >= 0 ? fmt::format("vision.{}", t.unit) : "vision";
      case ParamGroup::projector: return "vision.projector";
      case ParamGroup::final_norm:
      case ParamGroup::lm_head: return "head";
    }
    return "?";
  };
  for (std::size_t i = 0; i < table.size(); ++i) {
    const ParamTensor& t = table[i];
    const bool same = !units.empty() && i > 0 &&
                      ((is_head(t.group) && is_head(table[i - 1].group)) ||
                       (t.group == table[i - 1].group && t.unit == table[i - 1].unit));
    if (!same) {
      units.push_back({unit_name(t), i, i, {}, 0});
    }
    units.back().last = i + 1;
    units.back().numel += t.numel();
  }
  if (spec.tie_embeddings) {
    for (auto& u : units) {
      if (u.name != "head") continue;
      for (std::size_t i = 0; i < table.size(); ++i)
        if (table[i].group == ParamGroup::embedding && table[i].shape.size() == 2 && table[i].shape[0] == spec.vocab_size) {
          u.borrowed.push_back(i);
          u.numel += table[i].numel();
          break;
        }
    }
  }
  return units;
}

ParameterCounts count_parameters(const ModelSpec& spec) {
  ParameterCounts c;
  std::int64_t routed = 0;
  const std::vector<ParamTensor> table = parameter_table(spec);
  for (const auto& u : parameter_units(spec, table)) c.largest_unit = std::max(c.largest_unit, u.numel);
  for (const auto& p : table) {
    const std::int64_t n = p.numel();
    c.total += n;
    switch (p.group) {
      case ParamGroup::embedding: c.embedding += n; break;
      case ParamGroup::lm_head: c.lm_head += n; break;
      case ParamGroup::layer: c.decoder_layers += n; break;
      case ParamGroup::mtp: c.mtp += n; break;
      case ParamGroup::vision:
      case ParamGroup::projector: c.vision += n; break;
      case ParamGroup::final_norm: break;
    }
    if (p.expert >= 0) routed += n;
  }
  // A token visits top_k of num_experts routed experts; everything else is always active.
  c.activated = c.total - routed;
  if (spec.is_moe() && spec.moe.num_experts > 0)
    c.activated += routed * spec.moe.top_k / spec.moe.num_experts;
  return c;
}

}  // namespace llmlab
