// Hugging Face config.json -> model.* recipe entries. Each entry keeps the line of the
// config.json field it came from, so a bad value is reported there. Fields that do not shape
// the parameters or activations (token ids, initializer ranges, ...) are ignored.
#include <fmt/format.h>

#include <initializer_list>
#include <set>

#include "recipe/raw_config.hpp"

namespace llmlab {

namespace {

class HfMapper {
 public:
  HfMapper(std::string file, std::map<std::string, RawEntry>& out) : file_(std::move(file)), out_(out) {}

  // Copies the first present, non-null field among `names` to `key`.
  bool copy(const YAML::Node& cfg, std::initializer_list<const char*> names, const std::string& key) {
    for (const char* n : names) {
      const YAML::Node v = cfg[n];
      if (v && !v.IsNull()) {
        out_[key] = RawEntry{v, mark_of(v, file_), false};
        return true;
      }
    }
    return false;
  }
  // Sets `key` to a value implied by the architecture, located at `at`.
  template <class T>
  void set(const std::string& key, const T& value, const YAML::Node& at) {
    out_[key] = RawEntry{YAML::Node(value), mark_of(at, file_), false};
  }

  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::map<std::string, RawEntry>& out_;
};

void map_decoder(HfMapper& m, const YAML::Node& cfg, const std::string& type, const YAML::Node& type_node) {
  const bool gpt2 = type == "gpt2";
  m.set("model.arch", gpt2 ? "gpt2" : "llama", type_node);
  if (!m.copy(cfg, {"_name_or_path"}, "model.name")) m.set("model.name", type, type_node);
  m.copy(cfg, {"vocab_size"}, "model.vocab_size");
  m.copy(cfg, {"hidden_size", "n_embd"}, "model.hidden_size");
  m.copy(cfg, {"num_hidden_layers", "n_layer"}, "model.num_layers");
  m.copy(cfg, {"num_attention_heads", "n_head"}, "model.num_heads");
  m.copy(cfg, {"num_key_value_heads"}, "model.num_kv_heads");
  m.copy(cfg, {"head_dim"}, "model.head_dim");
  if (!m.copy(cfg, {"intermediate_size", "n_inner"}, "model.intermediate_size") && gpt2) {
    // GPT-2 leaves n_inner null: 4 x n_embd.
    const YAML::Node h = cfg["n_embd"];
    if (h && h.IsScalar()) {
      try {
        m.set("model.intermediate_size", 4 * h.as<long long>(), h);
      } catch (const YAML::Exception&) {
        // A non-integer n_embd is reported when model.hidden_size is bound.
      }
    }
  }
  m.copy(cfg, {"max_position_embeddings", "n_positions"}, "model.max_position_embeddings");
  // Hugging Face's own per-architecture default when the field is absent.
  if (!m.copy(cfg, {"tie_word_embeddings"}, "model.tie_embeddings")) m.set("model.tie_embeddings", gpt2, type_node);
  m.copy(cfg, {"rms_norm_eps", "layer_norm_epsilon"}, "model.norm_eps");
  m.copy(cfg, {"rope_theta"}, "model.rope_theta");

  if (gpt2) {
    m.set("model.qkv_bias", true, type_node);
    m.set("model.o_bias", true, type_node);
    m.set("model.mlp_bias", true, type_node);
    m.copy(cfg, {"attn_pdrop"}, "model.dropout");
    return;
  }
  if (type == "qwen2") {
    m.set("model.qkv_bias", true, type_node);  // Qwen2 always biases q, k and v, never o
    m.set("model.o_bias", false, type_node);
  } else {
    m.copy(cfg, {"attention_bias"}, "model.qkv_bias");
    m.copy(cfg, {"attention_bias"}, "model.o_bias");
  }
  m.copy(cfg, {"mlp_bias"}, "model.mlp_bias");
  if (type == "qwen3") m.set("model.qk_norm", true, type_node);

  if (type == "deepseek_v3") {
    m.copy(cfg, {"n_routed_experts"}, "model.moe.num_experts");
    m.copy(cfg, {"n_shared_experts"}, "model.moe.num_shared_experts");
    m.copy(cfg, {"moe_intermediate_size"}, "model.moe.expert_intermediate_size");
    m.copy(cfg, {"num_experts_per_tok"}, "model.moe.top_k");
    m.copy(cfg, {"first_k_dense_replace"}, "model.moe.first_dense_layers");
    m.copy(cfg, {"moe_layer_freq"}, "model.moe.layer_freq");
    const YAML::Node method = cfg["topk_method"];
    m.set("model.moe.router_bias", method && method.IsScalar() && method.Scalar() == "noaux_tc",
          method ? method : type_node);
    if (!m.copy(cfg, {"q_lora_rank"}, "model.mla.q_lora_rank")) m.set("model.mla.q_lora_rank", 0, type_node);
    m.copy(cfg, {"kv_lora_rank"}, "model.mla.kv_lora_rank");
    m.copy(cfg, {"qk_nope_head_dim"}, "model.mla.qk_nope_head_dim");
    m.copy(cfg, {"qk_rope_head_dim"}, "model.mla.qk_rope_head_dim");
    m.copy(cfg, {"v_head_dim"}, "model.mla.v_head_dim");
    m.copy(cfg, {"num_nextn_predict_layers"}, "model.mtp_depth");
  }
}

void map_vision(HfMapper& m, const YAML::Node& v) {
  m.copy(v, {"num_hidden_layers"}, "model.vision.num_layers");
  m.copy(v, {"hidden_size"}, "model.vision.hidden_size");
  m.copy(v, {"num_attention_heads"}, "model.vision.num_heads");
  m.copy(v, {"intermediate_size"}, "model.vision.intermediate_size");
  m.copy(v, {"patch_size"}, "model.vision.patch_size");
  m.copy(v, {"num_channels"}, "model.vision.num_channels");
  const YAML::Node ph = v["init_pos_emb_height"], pw = v["init_pos_emb_width"];
  try {
    if (ph && pw) m.set("model.vision.position_table", ph.as<long long>() * pw.as<long long>(), ph);
    if (const YAML::Node k = v["merge_kernel_size"]; k && k.IsSequence() && k.size() == 2)
      m.set("model.vision.merge", k[0].as<long long>() * k[1].as<long long>(), k);
  } catch (const YAML::Exception&) {
    throw InputError(mark_of(ph, m.file()), "vision_config", "position grid and merge kernel must be integers");
  }
}

const std::set<std::string>& supported_types() {
  static const std::set<std::string> types{"llama", "mistral", "qwen2", "qwen3", "gpt2", "deepseek_v3", "kimi_vl"};
  return types;
}

}  // namespace

std::map<std::string, RawEntry> hf_config_entries(const std::string& path, const SourceLoc& where) {
  const YAML::Node doc = read_yaml_file(path, where, "model.hf_config", "config.json", Syntax::json);
  if (!doc.IsMap()) throw InputError(mark_of(doc, path), "", "a config.json must be a JSON object");
  std::map<std::string, RawEntry> out;
  HfMapper m(path, out);

  const YAML::Node type_node = doc["model_type"];
  if (!type_node || !type_node.IsScalar())
    throw InputError(SourceLoc{path, 1, 1}, "model_type", "missing: cannot tell the architecture");
  const std::string type = type_node.Scalar();
  if (!supported_types().count(type)) {
    std::string list;
    for (const auto& t : supported_types()) list += (list.empty() ? "" : ", ") + t;
    throw InputError(mark_of(type_node, path), "model_type",
                     fmt::format("'{}' is not supported (supported: {})", type, list));
  }
  if (type == "kimi_vl") {
    const YAML::Node text = doc["text_config"], vision = doc["vision_config"];
    if (!text || !text.IsMap()) throw InputError(mark_of(type_node, path), "text_config", "missing for kimi_vl");
    const YAML::Node text_type = text["model_type"];
    map_decoder(m, text, text_type && text_type.IsScalar() ? text_type.Scalar() : "deepseek_v3",
                text_type ? text_type : type_node);
    if (vision && vision.IsMap()) map_vision(m, vision);
    m.set("model.name", "kimi_vl", type_node);
    return out;
  }
  map_decoder(m, doc, type, type_node);
  return out;
}

}  // namespace llmlab
