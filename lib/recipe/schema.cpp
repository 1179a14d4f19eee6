// Every recipe key with its type, range and documentation. Adding a setting means adding a
// struct member in lib/spec and one line here; binding, printing and docs follow.
#include "recipe/schema.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <utility>

#include "core/text.hpp"
#include "core/units.hpp"
#include "recipe/recipe.hpp"
#include "recipe/field_builders.hpp"

namespace llmlab {

namespace {

using namespace fields;

std::vector<Field> build_schema() {
  std::vector<Field> s;
  const double inf = std::numeric_limits<double>::infinity();

  // model: the architecture (a preset from recipes/models/ or a Hugging Face config.json).
  // Expanded by the loader (raw_config.cpp) into the other model.* keys; nothing to bind.
  Field hf = blank_field("model.hf_config", "path",
                         "a Hugging Face config.json whose fields fill the model section (recipe keys override)");
  hf.assign = [](Recipe&, const YAML::Node&, const SourceLoc&) {};
  hf.show = [](const Recipe&) { return std::string(); };
  hf.printed = false;
  hf.default_text = "-";
  s.push_back(hf);
  s.push_back(text("model.name", AT(model.name), "display name"));
  s.push_back(choice<Arch>("model.arch", AT(model.arch), {{"gpt2", Arch::gpt2}, {"llama", Arch::llama}},
                           "gpt2: LayerNorm, learned positions, GELU; llama: RMSNorm, RoPE, SwiGLU, GQA"));
  s.push_back(integer("model.vocab_size", AT(model.vocab_size), 1, kMaxInt, "vocabulary size"));
  s.back().default_text = "required";
  s.push_back(integer("model.hidden_size", AT(model.hidden_size), 1, kMaxInt, "model width h"));
  s.back().default_text = "required";
  s.push_back(integer("model.num_layers", AT(model.num_layers), 1, 4096, "decoder layers L"));
  s.back().default_text = "required";
  s.push_back(integer("model.num_heads", AT(model.num_heads), 1, kMaxInt, "attention (query) heads a"));
  s.back().default_text = "required";
  s.push_back(integer("model.num_kv_heads", AT(model.num_kv_heads), 0, kMaxInt,
                      "key/value heads for grouped-query attention; 0 = num_heads"));
  s.push_back(integer("model.head_dim", AT(model.head_dim), 0, kMaxInt, "per-head width; 0 = hidden_size / num_heads"));
  s.push_back(integer("model.intermediate_size", AT(model.intermediate_size), 1, kMaxInt, "dense MLP width"));
  s.back().default_text = "required (dense)";
  s.push_back(integer("model.max_position_embeddings", AT(model.max_position_embeddings), 1, kMaxInt,
                      "longest sequence (GPT-2: rows of the learned position table)"));
  s.push_back(boolean("model.tie_embeddings", AT(model.tie_embeddings), "output head shares the token embedding"));
  s.push_back(boolean("model.qk_norm", AT(model.qk_norm), "per-head RMSNorm of q and k (Qwen3)"));
  s.push_back(boolean("model.qkv_bias", AT(model.qkv_bias), "biases on the q, k, v projections"));
  s.push_back(boolean("model.o_bias", AT(model.o_bias), "bias on the attention output projection"));
  s.push_back(boolean("model.mlp_bias", AT(model.mlp_bias), "biases in the MLP"));
  s.push_back(number("model.dropout", AT(model.dropout), 0, 1, true, "attention and residual dropout probability"));
  s.push_back(number("model.norm_eps", AT(model.norm_eps), 0, inf, false, "epsilon of the norms"));
  s.push_back(number("model.rope_theta", AT(model.rope_theta), 0, inf, false, "RoPE base"));
  s.push_back(integer("model.mtp_depth", AT(model.mtp_depth), 0, 64,
                      "multi-token-prediction modules (DeepSeek-V3), each predicting one more token"));
  s.push_back(integer("model.moe.num_experts", AT(model.moe.num_experts), 0, 4096, "routed experts; 0 = dense"));
  s.push_back(integer("model.moe.num_shared_experts", AT(model.moe.num_shared_experts), 0, kMaxInt,
                      "experts every token uses"));
  s.push_back(integer("model.moe.expert_intermediate_size", AT(model.moe.expert_intermediate_size), 0, kMaxInt,
                      "MLP width of one expert"));
  s.push_back(integer("model.moe.top_k", AT(model.moe.top_k), 0, kMaxInt, "routed experts per token"));
  s.push_back(integer("model.moe.first_dense_layers", AT(model.moe.first_dense_layers), 0, kMaxInt,
                      "leading layers with a dense MLP (first_k_dense_replace)"));
  s.push_back(integer("model.moe.layer_freq", AT(model.moe.layer_freq), 1, kMaxInt, "every n-th layer after those is MoE"));
  s.push_back(number("model.moe.capacity_factor", AT(model.moe.capacity_factor), 0, inf, false,
                     "expert buffer slots per routed token; 0 = dropless"));
  s.push_back(boolean("model.moe.router_bias", AT(model.moe.router_bias),
                      "router score-correction bias (DeepSeek-V3 noaux_tc)"));
  s.push_back(integer("model.mla.q_lora_rank", AT(model.mla.q_lora_rank), 0, kMaxInt, "MLA query compression; 0 = none"));
  s.push_back(integer("model.mla.kv_lora_rank", AT(model.mla.kv_lora_rank), 0, kMaxInt,
                      "MLA key/value compression; 0 = standard attention"));
  s.push_back(integer("model.mla.qk_nope_head_dim", AT(model.mla.qk_nope_head_dim), 0, kMaxInt, "MLA q/k width without RoPE"));
  s.push_back(integer("model.mla.qk_rope_head_dim", AT(model.mla.qk_rope_head_dim), 0, kMaxInt, "MLA q/k width with RoPE"));
  s.push_back(integer("model.mla.v_head_dim", AT(model.mla.v_head_dim), 0, kMaxInt, "MLA value width"));
  s.push_back(integer("model.vision.num_layers", AT(model.vision.num_layers), 0, 4096, "vision encoder blocks; 0 = text-only"));
  s.push_back(integer("model.vision.hidden_size", AT(model.vision.hidden_size), 0, kMaxInt, "vision encoder width"));
  s.push_back(integer("model.vision.num_heads", AT(model.vision.num_heads), 0, kMaxInt, "vision encoder heads"));
  s.push_back(integer("model.vision.intermediate_size", AT(model.vision.intermediate_size), 0, kMaxInt, "vision MLP width"));
  s.push_back(integer("model.vision.patch_size", AT(model.vision.patch_size), 1, kMaxInt, "pixels per patch side"));
  s.push_back(integer("model.vision.num_channels", AT(model.vision.num_channels), 1, kMaxInt, "image channels"));
  s.push_back(integer("model.vision.position_table", AT(model.vision.position_table), 0, kMaxInt,
                      "learned position embeddings (grid cells)"));
  s.push_back(integer("model.vision.merge", AT(model.vision.merge), 1, kMaxInt,
                      "patches merged into one language token by the projector"));

  s.push_back(integer("data.packing_length", AT(data.packing_length), 1, kMaxInt, "tokens per packed row (sequence length)"));
  s.push_back(integer("data.vision_tokens", AT(data.vision_tokens), 0, kMaxInt, "image patches per row (vision models)"));

  s.push_back(path_list("data.inputs", AT(data.inputs), "pack-data: input files (JSONL, text, .gz)"));
  s.push_back(choice<InputFormat>("data.format", AT(data.format),
                                  {{"auto", InputFormat::auto_detect}, {"jsonl", InputFormat::jsonl}, {"text", InputFormat::text}},
                                  "auto: .jsonl/.json(.gz) are JSONL, other files text"));
  s.push_back(text("data.text_field", AT(data.text_field), "JSONL field holding plain text"));
  s.push_back(text("data.text_delimiter", AT(data.text_delimiter),
                   "text files: the string between documents (e.g. \"\\n%\\n\" for fortunes); empty = one document per file"));
  s.push_back(path("data.tokenizer", AT(data.tokenizer), {"byte"}, "byte (embedded byte-level) or a Hugging Face tokenizer.json"));
  s.push_back(choice<ChatTemplateKind>("data.chat_template", AT(data.chat_template),
                                       {{"chatml", ChatTemplateKind::chatml}, {"llama3", ChatTemplateKind::llama3},
                                        {"custom", ChatTemplateKind::custom}},
                                       "how chat `messages` are rendered; custom uses chat_prefix and chat_message"));
  s.push_back(text("data.chat_prefix", AT(data.chat_prefix), "custom chat template: text before the first message"));
  s.push_back(text("data.chat_message", AT(data.chat_message),
                   "custom chat template: one message, containing {content} once and optionally {role}"));
  s.push_back(boolean("data.add_bos", AT(data.add_bos), "begin text and prompt/completion documents with BOS"));
  s.push_back(boolean("data.add_eos", AT(data.add_eos), "end text and prompt/completion documents with EOS"));
  s.push_back(text("data.bos_token", AT(data.bos_token), "BOS token text; empty = the tokenizer's usual one"));
  s.push_back(text("data.eos_token", AT(data.eos_token), "EOS token text; empty = the tokenizer's usual one"));
  s.push_back(choice<PackStrategy>("data.strategy", AT(data.strategy),
                                   {{"greedy", PackStrategy::greedy}, {"bfd", PackStrategy::bfd}, {"spfhp", PackStrategy::spfhp}},
                                   "packing: greedy (next-fit, lmms-engine), bfd (best-fit decreasing), spfhp (histogram)"));
  s.push_back(choice<OverflowPolicy>("data.overflow", AT(data.overflow),
                                     {{"split", OverflowPolicy::split}, {"truncate", OverflowPolicy::truncate},
                                      {"drop", OverflowPolicy::drop}},
                                     "documents longer than packing_length: split into chunks, truncate, or drop"));
  s.push_back(integer("data.pack_window", AT(data.pack_window), 1, kMaxInt,
                      "documents read, tokenized and packed together (bounds memory)"));
  s.push_back(integer("data.rows_per_shard", AT(data.rows_per_shard), 1, kMaxInt, "rows per shard file"));
  s.push_back(integer("data.seed", AT(data.seed), 0, kMaxInt, "shuffles rows within each window"));
  s.push_back(path("data.output", AT(data.output), {}, "pack-data output directory (shards + manifest.json)"));
  s.push_back(boolean("data.skip_bad", AT(data.skip_bad), "count and skip bad records instead of stopping"));
  s.push_back(integer("data.threads", AT(data.threads), 0, 4096, "tokenizer threads; 0 = all cores"));

  s.push_back(integer("train.micro_batch_size", AT(train.micro_batch_size), 1, kMaxInt, "packed rows per rank per micro-step"));
  s.push_back(integer("train.gradient_accumulation_steps", AT(train.gradient_accumulation_steps), 1, kMaxInt,
                      "micro-steps per optimizer step"));
  s.push_back(choice<Precision>("train.precision", AT(train.precision),
                                {{"bf16-mixed", Precision::bf16_mixed}, {"fp16-mixed", Precision::fp16_mixed},
                                 {"fp32", Precision::fp32}},
                                "mixed: 16-bit params/activations with fp32 master weights; fp32: everything fp32"));
  s.push_back(choice<GradDtype>("train.grad_dtype", AT(train.grad_dtype), {{"bf16", GradDtype::bf16}, {"fp32", GradDtype::fp32}},
                                "gradient buffer dtype; fp32 is Megatron/DeepSpeed's 18 bytes/param"));
  s.push_back(choice<AttentionImpl>("train.attention", AT(train.attention),
                                    {{"flash", AttentionImpl::flash}, {"naive", AttentionImpl::naive}},
                                    "flash keeps only the logsumexp; naive materialises the s x s probabilities"));
  s.push_back(boolean("train.causal", AT(train.causal), "causal attention mask"));
  s.push_back(integer("train.steps", AT(train.steps), 1, kMaxInt, "optimizer steps of the run"));
  s.push_back(integer("train.seed", AT(train.seed), 0, kMaxInt, "seeds initialisation and data order"));
  s.push_back(integer("train.threads", AT(train.threads), 0, 4096, "CPU threads; 0 = all cores"));
  s.push_back(choice<NonFinitePolicy>("train.on_nonfinite", AT(train.on_nonfinite),
                                      {{"stop", NonFinitePolicy::stop}, {"skip", NonFinitePolicy::skip}},
                                      "a NaN/inf loss or gradient: stop the run, or skip that step's update"));
  s.push_back(integer("train.exit_interval", AT(train.exit_interval), 0, kMaxInt,
                      "save a checkpoint and exit after a step divisible by this (Megatron's --exit-interval); 0 = off"));

  s.push_back(path_list("data.shards", AT(data.shards), "train: pack-data output directories or shard files"));
  s.push_back(path_list("eval.shards", AT(eval.shards), "held-out pack-data output or shards; empty = no eval"));
  s.push_back(integer("eval.every", AT(eval.every), 0, kMaxInt, "steps between evaluations; 0 = at the end only"));
  s.push_back(integer("eval.batches", AT(eval.batches), 1, kMaxInt, "micro-batches per evaluation"));

  s.push_back(number("optim.lr", AT(optim.lr), 0, inf, false, "peak learning rate (AdamW)"));
  s.push_back(number("optim.min_lr_ratio", AT(optim.min_lr_ratio), 0, 1, false, "final lr as a fraction of optim.lr"));
  s.push_back(choice<LrSchedule>("optim.schedule", AT(optim.schedule),
                                 {{"cosine", LrSchedule::cosine}, {"linear", LrSchedule::linear},
                                  {"constant", LrSchedule::constant}},
                                 "decay after warmup"));
  s.push_back(integer("optim.warmup_steps", AT(optim.warmup_steps), 0, kMaxInt, "linear warmup steps"));
  s.push_back(number("optim.weight_decay", AT(optim.weight_decay), 0, inf, false,
                     "decoupled weight decay on matrices (not norms, biases, embeddings)"));
  s.push_back(number("optim.beta1", AT(optim.beta1), 0, 1, true, "AdamW first-moment decay"));
  s.push_back(number("optim.beta2", AT(optim.beta2), 0, 1, true, "AdamW second-moment decay"));
  s.push_back(number("optim.eps", AT(optim.eps), 0, inf, false, "AdamW epsilon"));
  s.push_back(number("optim.grad_clip", AT(optim.grad_clip), 0, inf, false, "clip the global gradient norm; 0 = off"));

  s.push_back(path("output.dir", AT(output.dir), {}, "run directory: metrics.jsonl and checkpoints/"));
  s.back().default_text = "runs/<model name>";
  s.push_back(integer("output.save_every", AT(output.save_every), 0, kMaxInt,
                      "steps between checkpoints; 0 = only at the end"));
  s.push_back(integer("output.keep_last", AT(output.keep_last), 0, kMaxInt, "checkpoints kept; 0 = all"));
  s.push_back(integer("output.log_every", AT(output.log_every), 1, kMaxInt, "steps between progress lines"));
  s.push_back(boolean("output.checkpoints", AT(output.checkpoints), "write checkpoints; false for benchmarks and smoke tests"));

  s.push_back(choice<CheckpointPolicy>(
      "checkpointing.policy", AT(checkpointing.policy),
      {{"none", CheckpointPolicy::none}, {"full", CheckpointPolicy::full}, {"selective", CheckpointPolicy::selective},
       {"every_k", CheckpointPolicy::every_k}, {"sqrt", CheckpointPolicy::sqrt}, {"budget", CheckpointPolicy::budget}},
      "activation checkpointing: what is kept in forward and recomputed in backward"));
  s.push_back(integer("checkpointing.every_k", AT(checkpointing.every_k), 1, kMaxInt,
                      "every_k: keep the input of every k-th layer, recompute segments of k layers"));
  s.push_back(choice<SelectiveScope>("checkpointing.selective", AT(checkpointing.selective),
                                     {{"core", SelectiveScope::core}, {"pointwise", SelectiveScope::pointwise}},
                                     "selective: core = attention core (Megatron); pointwise adds norm and activation outputs"));
  s.push_back(bytes("checkpointing.budget", AT(checkpointing.budget),
                    "budget: activation bytes to fill; 0 = whatever the device memory leaves"));

  s.push_back(integer("zero.stage", AT(zero.stage), 0, 3, "ZeRO: 1 shards optimizer states, 2 also gradients, 3 also parameters"));
  s.push_back(integer("zero.bucket_elements", AT(zero.bucket_elements), 1, kMaxInt,
                      "gradient elements per reduction; each rank holds world x this as receive scratch"));
  s.push_back(integer("zero.prefetch_layers", AT(zero.prefetch_layers), 0, kMaxInt, "ZeRO-3: layers gathered ahead of use"));

  s.push_back(integer("dist.world_size", AT(dist.world_size), 1, kMaxInt,
                      "data-parallel ranks to plan for (train: set from the launcher)"));
  s.push_back(number("dist.timeout_seconds", AT(dist.timeout_seconds), 0, 1e7, false,
                     "train: seconds a collective may take before every rank stops with an error (a rank died)"));

  s.push_back(choice<Device>("hardware.device", AT(hardware.device), {{"cuda", Device::cuda}, {"cpu", Device::cpu}},
                             "the device each rank trains on"));
  Field memory = bytes("hardware.memory", AT(hardware.memory),
                       "memory per rank, or auto to query the device; default 80GiB (cuda), host RAM (cpu)");
  memory.type = "bytes or auto";
  memory.assign = [](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    if (v.IsScalar() && v.Scalar() == "auto") {
      r.hardware.memory_auto = true;
      r.hardware.memory = 0;
      return;
    }
    r.hardware.memory_auto = false;
    r.hardware.memory = parse_bytes_value(v, where, "hardware.memory");
  };
  memory.show = [](const Recipe& r) { return r.hardware.memory_auto ? std::string("auto") : show_bytes(r.hardware.memory); };
  memory.default_text = "by device";
  s.push_back(memory);
  s.push_back(number("hardware.peak_tflops", AT(hardware.peak_tflops), 0, inf, false,
                     "dense peak TFLOP/s in the training dtype; 0 = device default (H100 SXM bf16: 989)"));
  s.back().default_text = "by device";
  s.push_back(number("hardware.mfu", AT(hardware.mfu), 0, 1, false, "fraction of peak a step achieves, for step time"));
  s.push_back(number("hardware.interconnect_gbps", AT(hardware.interconnect_gbps), 0, inf, false,
                     "collective bus bandwidth per rank, GB/s; 0 = device default"));
  s.back().default_text = "by device";
  s.push_back(number("hardware.comm_overlap", AT(hardware.comm_overlap), 0, 1, false,
                     "fraction of communication hidden behind compute"));
  s.push_back(bytes("hardware.runtime_overhead", AT(hardware.runtime_overhead),
                    "memory the runtime takes before training (CUDA context); default 400MiB cuda, 0 cpu"));
  s.back().default_text = "by device";
  s.push_back(number("hardware.allocator_reserve", AT(hardware.allocator_reserve), 0, 1, true,
                     "allocator fragmentation reserve as a fraction of the rest; default 0.05 cuda, 0 cpu"));
  s.back().default_text = "by device";
  add_rl_fields(s);
  add_bench_fields(s);
  return s;
}

#undef AT

}  // namespace

const std::vector<Field>& recipe_schema() {
  static const std::vector<Field> schema = build_schema();
  return schema;
}

const Field* find_field(const std::string& key) {
  for (const auto& f : recipe_schema())
    if (f.key == key) return &f;
  return nullptr;
}

}  // namespace llmlab
