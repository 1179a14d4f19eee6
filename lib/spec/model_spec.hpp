// ModelSpec: the architecture and shape of a decoder model, and its parameter tensors by
// Hugging Face name. Plain data: the planner sizes memory from it, model code (later) builds
// layers from it, checkpoints name tensors from it. Parameter counts come only from here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llmlab {

enum class Arch { gpt2, llama };

struct MoeSpec {
  std::int64_t num_experts = 0;          // routed experts; 0 = dense MLP everywhere
  std::int64_t num_shared_experts = 0;   // always-active experts (DeepSeek/Moonlight)
  std::int64_t expert_intermediate_size = 0;
  std::int64_t top_k = 0;                // routed experts per token
  std::int64_t first_dense_layers = 0;   // layers [0, k) keep a dense MLP (first_k_dense_replace)
  std::int64_t layer_freq = 1;           // after those, every n-th layer is MoE
  double capacity_factor = 0.0;          // 0 = dropless (exactly top_k slots per token)
  bool router_bias = false;              // e_score_correction_bias (DeepSeek-V3 noaux_tc)
};

// Multi-head latent attention (DeepSeek-V2/V3, Moonlight). Off when kv_lora_rank == 0.
struct MlaSpec {
  std::int64_t q_lora_rank = 0;  // 0 = plain q_proj
  std::int64_t kv_lora_rank = 0;
  std::int64_t qk_nope_head_dim = 0;
  std::int64_t qk_rope_head_dim = 0;
  std::int64_t v_head_dim = 0;
};

// A ViT encoder and projector in front of the decoder (Kimi-VL's MoonViT shape):
// LayerNorm, fused-QKV attention with biases, GELU MLP, learned 2-D position table,
// then a patch-merging projector (LayerNorm, Linear, GELU, Linear) into the text width.
struct VisionSpec {
  std::int64_t num_layers = 0;  // 0 = text-only
  std::int64_t hidden_size = 0;
  std::int64_t num_heads = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t patch_size = 14;
  std::int64_t num_channels = 3;
  std::int64_t position_table = 4096;  // learned positions (64 x 64 grid)
  std::int64_t merge = 4;              // patches merged per projected token (2 x 2)
};

struct ModelSpec {
  std::string name;
  Arch arch = Arch::llama;
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;
  std::int64_t num_layers = 0;
  std::int64_t num_heads = 0;
  std::int64_t num_kv_heads = 0;  // resolved to num_heads when not given
  std::int64_t head_dim = 0;      // resolved to hidden_size / num_heads when not given
  std::int64_t intermediate_size = 0;
  std::int64_t max_position_embeddings = 2048;
  bool tie_embeddings = false;
  bool qk_norm = false;    // per-head RMSNorm on q and k (Qwen3)
  bool qkv_bias = false;   // biases on q/k/v projections (Qwen2, GPT-2)
  bool o_bias = false;     // bias on the attention output projection
  bool mlp_bias = false;
  double dropout = 0.0;    // attention-probability and residual dropout (GPT-2 style)
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  std::int64_t mtp_depth = 0;  // DeepSeek-V3 multi-token-prediction modules
  MoeSpec moe;
  MlaSpec mla;
  VisionSpec vision;

  bool is_moe() const { return moe.num_experts > 0; }
  bool is_mla() const { return mla.kv_lora_rank > 0; }
  bool has_vision() const { return vision.num_layers > 0; }
  // True when decoder layer `layer` has a routed-expert MLP.
  bool layer_is_moe(std::int64_t layer) const;
};

// Where a parameter tensor belongs; the planner and ZeRO-3 gather by unit.
enum class ParamGroup { embedding, layer, final_norm, lm_head, mtp, vision, projector };

struct ParamTensor {
  std::string name;                 // Hugging Face state-dict name
  std::vector<std::int64_t> shape;  // as stored by Hugging Face
  ParamGroup group;
  std::int64_t unit;      // layer / MTP module / vision block index, -1 for single tensors
  std::int64_t expert;    // routed expert index, -1 otherwise
  bool decay;             // AdamW weight decay applies (matrices); not norms, biases, embeddings

  std::int64_t numel() const;
};

// Every parameter tensor, in Hugging Face order.
std::vector<ParamTensor> parameter_table(const ModelSpec& spec);

// Parameters used together by one step of the model: the embeddings, one layer, the output
// head (final norm, and the output projection or the tied token embedding). ZeRO-3 gathers a
// unit at a time and gradients are reduced unit by unit, so the unit is also what sizes the
// gather and gradient buffers of the Plan. A unit's own tensors are consecutive in the table;
// a borrowed tensor belongs to an earlier unit (the tied embedding, borrowed by the head).
struct ParamUnit {
  std::string name;                   // "embedding", "decoder.3", "head", "mtp.0", "vision.2"
  std::size_t first = 0, last = 0;    // own tensors: table indices [first, last)
  std::vector<std::size_t> borrowed;  // table indices of tensors owned by another unit
  std::int64_t numel = 0;             // own plus borrowed elements (what a gather holds)
};

// Units in table order: (group, unit) runs of the table, with the final norm and lm_head
// merged into "head".
std::vector<ParamUnit> parameter_units(const ModelSpec& spec, const std::vector<ParamTensor>& table);

struct ParameterCounts {
  std::int64_t total = 0;
  std::int64_t embedding = 0;     // token (+ learned position) embeddings
  std::int64_t lm_head = 0;       // 0 when tied
  std::int64_t decoder_layers = 0;
  std::int64_t mtp = 0;
  std::int64_t vision = 0;        // encoder + projector
  std::int64_t activated = 0;     // per token: routed experts count top_k / num_experts
  std::int64_t largest_unit = 0;  // elements of the biggest ParamUnit (gathered at once under ZeRO-3)
};

ParameterCounts count_parameters(const ModelSpec& spec);

const char* arch_name(Arch arch);

}  // namespace llmlab
