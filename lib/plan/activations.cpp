// Activation slot tables per block. Conventions: T = b*s tokens of one micro-batch, e = bytes
// of an activation element (2 under mixed precision, 4 in fp32); norm statistics and router
// logits are fp32; dropout masks one byte per element. A GEMM of [T, in] x [in, out] costs
// 2*T*in*out FLOPs forward and twice that backward (input and weight gradients).
#include "plan/activations.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace llmlab {

std::int64_t BlockProfile::bytes_of(SlotClass cls) const {
  std::int64_t n = 0;
  for (const auto& s : slots)
    if (s.cls == cls) n += s.bytes;
  return n;
}

std::int64_t BlockProfile::total_bytes() const {
  std::int64_t n = 0;
  for (const auto& s : slots) n += s.bytes;
  return n;
}

namespace {

// Nominal FLOPs per element of the pointwise ops (they are memory-bound; these only make
// recomputing them visible, never dominant).
constexpr double kNormFlops = 4, kRopeFlops = 3, kSwigluFlops = 5, kGeluFlops = 8, kSoftmaxFlops = 5;

class Builder {
 public:
  Builder(BlockProfile& p, std::int64_t e) : p_(p), e_(e) {}

  std::int64_t e() const { return e_; }

  void slot(const std::string& name, std::vector<std::int64_t> dims, std::int64_t elem_bytes, SlotClass cls,
            double rebuild_flops = 0, bool loss = false) {
    std::int64_t n = elem_bytes;
    std::string shape = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) {
      n *= dims[i];
      shape += (i ? ", " : "") + std::to_string(dims[i]);
    }
    p_.slots.push_back({prefix_ + name, shape + "]", n, cls, loss, rebuild_flops});
  }
  // An activation-dtype slot of [rows, cols].
  void act(const std::string& name, std::int64_t rows, std::int64_t cols, SlotClass cls, double rebuild_flops = 0) {
    slot(name, {rows, cols}, e_, cls, rebuild_flops);
  }
  void gemm(std::int64_t rows, std::int64_t in, std::int64_t out) {
    const double f = 2.0 * static_cast<double>(rows) * static_cast<double>(in) * static_cast<double>(out);
    p_.forward_flops += f;
    p_.backward_flops += 2 * f;
  }
  void pointwise(double elements, double flops_per_element) {
    p_.forward_flops += elements * flops_per_element;
    p_.backward_flops += 2 * elements * flops_per_element;
  }
  void flops(double forward, double backward) {
    p_.forward_flops += forward;
    p_.backward_flops += backward;
  }
  void scratch(std::int64_t bytes) { p_.backward_scratch = std::max(p_.backward_scratch, bytes); }
  void output(std::int64_t bytes) { p_.output_bytes = bytes; }
  void set_prefix(std::string prefix) { prefix_ = std::move(prefix); }

 private:
  BlockProfile& p_;
  std::int64_t e_;
  std::string prefix_;
};

// A norm over [T, width]: fp32 statistics always saved (LayerNorm: mean and rstd; RMSNorm:
// rstd), the output recomputable from input and statistics.
void norm(Builder& b, const std::string& name, std::int64_t T, std::int64_t width, bool layernorm) {
  b.slot(name + (layernorm ? ".mean_rstd" : ".rstd"), {T, layernorm ? 2 : 1}, 4, SlotClass::saved);
  b.act(name + ".out", T, width, SlotClass::pointwise, kNormFlops * static_cast<double>(T * width));
  b.pointwise(static_cast<double>(T * width), kNormFlops);
}

struct AttentionShape {
  std::int64_t heads, kv_heads, d_qk, d_v;
};

// Attention core and output for one micro-batch; returns the backward temporaries of the
// attention part (excluding q/k/v gradients, which the caller adds).
std::int64_t attention_core(Builder& b, const MicroBatch& mb, const AttentionShape& a, const RunSettings& run,
                            double dropout) {
  const std::int64_t T = mb.tokens(), s = mb.seq_len, rows = mb.rows;
  const bool flash = run.train.attention == AttentionImpl::flash;
  const double scores = static_cast<double>(rows * a.heads) * static_cast<double>(s) * static_cast<double>(s);
  // FlashAttention's convention: forward 2*s^2*(d_qk + d_v) per head; a causal flash kernel
  // skips the masked half, the materialised one computes it all.
  const double fwd = 2.0 * scores * static_cast<double>(a.d_qk + a.d_v) * (flash && run.train.causal ? 0.5 : 1.0);
  std::int64_t scratch = 0;
  if (flash) {
    b.slot("attn.lse", {a.heads, T}, 4, SlotClass::saved);
    b.flops(fwd, 2.5 * fwd);  // backward recomputes P: 2.5x forward
    scratch = a.heads * T * 4;  // D = rowsum(dO * O)
  } else {
    const double rebuild = 2.0 * scores * static_cast<double>(a.d_qk) + kSoftmaxFlops * scores;
    b.slot("attn.probs", {rows, a.heads, s, s}, b.e(), SlotClass::core, rebuild);
    b.flops(fwd + kSoftmaxFlops * scores, 2 * fwd + 2 * kSoftmaxFlops * scores);
    if (dropout > 0) {
      b.slot("attn.dropout_mask", {rows, a.heads, s, s}, 1, SlotClass::core, scores);
      b.slot("attn.probs_dropped", {rows, a.heads, s, s}, b.e(), SlotClass::core, scores);
      b.flops(scores, 2 * scores);
    }
    scratch = rows * a.heads * s * s * b.e();  // dP, turned into dS in place
  }
  b.act("attn.out", T, a.heads * a.d_v, SlotClass::saved);
  return scratch;
}

// q, k, v of standard (GQA) attention with optional per-head q/k norms; returns gradient bytes.
std::int64_t qkv_projections(Builder& b, const ModelSpec& m, std::int64_t T) {
  const std::int64_t h = m.hidden_size, a = m.num_heads, g = m.num_kv_heads, d = m.head_dim;
  b.gemm(T, h, (a + 2 * g) * d);
  if (m.qk_norm) {
    b.act("attn.q_proj", T, a * d, SlotClass::saved);
    b.act("attn.k_proj", T, g * d, SlotClass::saved);
    b.slot("attn.q_norm.rstd", {T, a}, 4, SlotClass::saved);
    b.slot("attn.k_norm.rstd", {T, g}, 4, SlotClass::saved);
    b.act("attn.q", T, a * d, SlotClass::pointwise, (kNormFlops + kRopeFlops) * static_cast<double>(T * a * d));
    b.act("attn.k", T, g * d, SlotClass::pointwise, (kNormFlops + kRopeFlops) * static_cast<double>(T * g * d));
    b.pointwise(static_cast<double>(T * (a + g) * d), kNormFlops);
  } else {
    b.act("attn.q", T, a * d, SlotClass::saved);
    b.act("attn.k", T, g * d, SlotClass::saved);
  }
  if (m.arch == Arch::llama) b.pointwise(static_cast<double>(T * (a + g) * d), kRopeFlops);
  b.act("attn.v", T, g * d, SlotClass::saved);
  return T * (a + 2 * g) * d * b.e();
}

// Multi-head latent attention projections (DeepSeek-V3); returns gradient bytes.
std::int64_t mla_projections(Builder& b, const ModelSpec& m, std::int64_t T) {
  const auto& l = m.mla;
  const std::int64_t h = m.hidden_size, a = m.num_heads, dqk = l.qk_nope_head_dim + l.qk_rope_head_dim;
  if (l.q_lora_rank > 0) {
    b.gemm(T, h, l.q_lora_rank);
    b.act("attn.q_a", T, l.q_lora_rank, SlotClass::saved);
    norm(b, "attn.q_a_norm", T, l.q_lora_rank, false);
    b.gemm(T, l.q_lora_rank, a * dqk);
  } else {
    b.gemm(T, h, a * dqk);
  }
  b.gemm(T, h, l.kv_lora_rank + l.qk_rope_head_dim);
  b.act("attn.kv_a", T, l.kv_lora_rank + l.qk_rope_head_dim, SlotClass::saved);
  norm(b, "attn.kv_norm", T, l.kv_lora_rank, false);
  b.gemm(T, l.kv_lora_rank, a * (l.qk_nope_head_dim + l.v_head_dim));
  b.act("attn.q", T, a * dqk, SlotClass::saved);
  b.act("attn.k", T, a * dqk, SlotClass::saved);
  b.act("attn.v", T, a * l.v_head_dim, SlotClass::saved);
  b.pointwise(static_cast<double>(T * a * 2 * l.qk_rope_head_dim), kRopeFlops);
  return T * a * (2 * dqk + l.v_head_dim) * b.e();
}

// A SwiGLU MLP over `rows` tokens: gate and up saved, their product recomputable; returns its
// backward temporaries d(act), d(gate), d(up).
std::int64_t swiglu(Builder& b, const std::string& prefix, std::int64_t rows, std::int64_t h, std::int64_t width) {
  b.gemm(rows, h, 2 * width);
  b.act(prefix + "gate", rows, width, SlotClass::saved);
  b.act(prefix + "up", rows, width, SlotClass::saved);
  b.act(prefix + "act", rows, width, SlotClass::pointwise, kSwigluFlops * static_cast<double>(rows * width));
  b.pointwise(static_cast<double>(rows * width), kSwigluFlops);
  b.gemm(rows, width, h);
  return 3 * rows * width * b.e();
}

// The MLP half: returns its backward temporaries.
std::int64_t mlp(Builder& b, const ModelSpec& m, std::int64_t layer, std::int64_t T) {
  const std::int64_t h = m.hidden_size, e = b.e();
  if (m.arch == Arch::gpt2) {
    const std::int64_t I = m.intermediate_size;
    b.gemm(T, h, I);
    b.act("mlp.fc", T, I, SlotClass::saved);
    b.act("mlp.gelu", T, I, SlotClass::pointwise, kGeluFlops * static_cast<double>(T * I));
    b.pointwise(static_cast<double>(T * I), kGeluFlops);
    b.gemm(T, I, h);
    return 2 * T * I * e;  // d(gelu out), d(fc)
  }
  if (!m.layer_is_moe(layer)) return swiglu(b, "mlp.", T, h, m.intermediate_size);
  const auto& moe = m.moe;
  const std::int64_t E = moe.num_experts, k = moe.top_k, Im = moe.expert_intermediate_size;
  // Routed slots: exactly T*k when dropless, else E experts x ceil(capacity * T * k / E).
  std::int64_t R = T * k;
  if (moe.capacity_factor > 0)
    R = E * static_cast<std::int64_t>(std::ceil(moe.capacity_factor * static_cast<double>(T * k) / static_cast<double>(E)));
  b.gemm(T, h, E);
  b.slot("moe.router_logits", {T, E}, 4, SlotClass::saved);
  b.slot("moe.routing", {T, k, 2}, 4, SlotClass::saved);  // expert index and weight
  b.act("moe.dispatched", R, h, SlotClass::saved);
  // Expert outputs before the weighted combine: the routing weights' gradient needs them.
  std::int64_t scratch = swiglu(b, "moe.", R, h, Im) + 2 * R * h * e + T * E * 4;
  b.act("moe.expert_out", R, h, SlotClass::saved);
  if (moe.num_shared_experts > 0) scratch += swiglu(b, "moe.shared.", T, h, moe.num_shared_experts * Im);
  return scratch;
}

// One transformer block (pre-norm, two residual branches) into `b`.
void transformer_block(Builder& b, const ModelSpec& m, const RunSettings& run, std::int64_t layer,
                       const MicroBatch& mb) {
  const std::int64_t T = mb.tokens(), h = m.hidden_size, e = b.e();
  const bool ln = m.arch == Arch::gpt2;
  b.act("input", T, h, SlotClass::input);
  norm(b, ln ? "ln_1" : "attn_norm", T, h, ln);

  std::int64_t qkv_grads = 0;
  AttentionShape shape{m.num_heads, m.num_kv_heads, m.head_dim, m.head_dim};
  if (m.is_mla()) {
    qkv_grads = mla_projections(b, m, T);
    shape = {m.num_heads, m.num_heads, m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim, m.mla.v_head_dim};
  } else {
    qkv_grads = qkv_projections(b, m, T);
  }
  const std::int64_t core_scratch = attention_core(b, mb, shape, run, m.dropout);
  b.gemm(T, shape.heads * shape.d_v, h);
  if (m.dropout > 0) b.slot("attn.resid_dropout_mask", {T, h}, 1, SlotClass::saved);
  // Attention backward holds d(out), dq/dk/dv, the core's temporaries and d(norm out).
  b.scratch(T * shape.heads * shape.d_v * e + qkv_grads + core_scratch + T * h * e);

  b.act("mlp.input", T, h, SlotClass::saved);  // residual stream after attention
  norm(b, ln ? "ln_2" : "mlp_norm", T, h, ln);
  const std::int64_t mlp_scratch = mlp(b, m, layer, T);
  if (m.dropout > 0) b.slot("mlp.resid_dropout_mask", {T, h}, 1, SlotClass::saved);
  b.scratch(mlp_scratch + T * h * e);
  b.output(T * h * e);
}

MicroBatch micro_batch(const RunSettings& run) { return {run.train.micro_batch_size, run.data.packing_length}; }

// The vision tower as a bidirectional GPT-2-style encoder over one image per row.
ModelSpec vision_as_decoder(const ModelSpec& m) {
  ModelSpec v;
  v.arch = Arch::gpt2;
  v.hidden_size = m.vision.hidden_size;
  v.num_heads = m.vision.num_heads;
  v.num_kv_heads = m.vision.num_heads;
  v.head_dim = m.vision.hidden_size / m.vision.num_heads;
  v.intermediate_size = m.vision.intermediate_size;
  return v;
}

RunSettings vision_run(const RunSettings& run) {
  RunSettings r = run;
  r.data.packing_length = run.data.vision_tokens;
  r.train.causal = false;
  return r;
}

}  // namespace

BlockProfile decoder_block(const ModelSpec& m, const RunSettings& run, std::int64_t layer) {
  BlockProfile p;
  p.kind = m.layer_is_moe(layer) ? "decoder (MoE)" : "decoder";
  Builder b(p, run.activation_bytes());
  transformer_block(b, m, run, layer, micro_batch(run));
  return p;
}

BlockProfile mtp_module(const ModelSpec& m, const RunSettings& run, std::int64_t depth) {
  BlockProfile p;
  p.kind = "mtp";
  Builder b(p, run.activation_bytes());
  const MicroBatch mb = micro_batch(run);
  const std::int64_t T = mb.tokens(), h = m.hidden_size, V = m.vocab_size;
  // h' = M [RMSNorm(h_prev); RMSNorm(Emb(t_{i+k}))], then one block, then the shared head.
  b.act("input", T, h, SlotClass::input);
  b.slot("enorm.rstd", {T, 1}, 4, SlotClass::saved);
  b.slot("hnorm.rstd", {T, 1}, 4, SlotClass::saved);
  b.act("concat", T, 2 * h, SlotClass::pointwise, kNormFlops * static_cast<double>(2 * T * h));
  b.pointwise(static_cast<double>(2 * T * h), kNormFlops);
  b.gemm(T, 2 * h, h);
  b.set_prefix("block.");
  BlockProfile inner;
  Builder ib(inner, run.activation_bytes());
  transformer_block(ib, m, run, m.num_layers + depth, mb);
  for (auto s : inner.slots) {
    if (s.cls == SlotClass::input) s.cls = SlotClass::saved;  // eh_proj output, not a checkpoint
    s.name = "block." + s.name;
    p.slots.push_back(s);
  }
  b.flops(inner.forward_flops, inner.backward_flops);
  b.scratch(inner.backward_scratch);
  b.set_prefix("");
  norm(b, "shared_head.norm", T, h, false);
  b.gemm(T, h, V);
  b.slot("logits", {T, V}, 4, SlotClass::saved, 0, true);
  b.slot("loss.lse", {T, 1}, 4, SlotClass::saved, 0, true);
  b.scratch(2 * T * h * b.e());
  return p;
}

BlockProfile vision_block(const ModelSpec& m, const RunSettings& run) {
  const RunSettings vr = vision_run(run);
  BlockProfile p = decoder_block(vision_as_decoder(m), vr, 0);
  p.kind = "vision";
  return p;
}

BlockProfile vision_projector(const ModelSpec& m, const RunSettings& run) {
  BlockProfile p;
  p.kind = "vision projector";
  Builder b(p, run.activation_bytes());
  const auto& v = m.vision;
  const std::int64_t Tv = run.train.micro_batch_size * run.data.vision_tokens;
  const std::int64_t merged = Tv / v.merge, wm = v.hidden_size * v.merge;
  // The patch-embedding convolution runs first; its FLOPs are booked here with the projector.
  b.gemm(Tv, v.num_channels * v.patch_size * v.patch_size, v.hidden_size);
  b.act("input", Tv, v.hidden_size, SlotClass::input);
  norm(b, "final_layernorm", Tv, v.hidden_size, true);
  norm(b, "pre_norm", Tv, v.hidden_size, true);
  b.gemm(merged, wm, wm);
  b.act("linear_1.out", merged, wm, SlotClass::saved);
  b.act("gelu", merged, wm, SlotClass::pointwise, kGeluFlops * static_cast<double>(merged * wm));
  b.pointwise(static_cast<double>(merged * wm), kGeluFlops);
  b.gemm(merged, wm, m.hidden_size);
  b.scratch(2 * merged * wm * b.e() + 2 * Tv * v.hidden_size * b.e());
  return p;
}

BlockProfile output_head(const ModelSpec& m, const RunSettings& run) {
  BlockProfile p;
  p.kind = "output head";
  Builder b(p, run.activation_bytes());
  const MicroBatch mb = micro_batch(run);
  const std::int64_t T = mb.tokens(), h = m.hidden_size, V = m.vocab_size;
  const bool ln = m.arch == Arch::gpt2;
  b.act("input", T, h, SlotClass::saved);  // the final hidden state: the norm's backward reads it
  b.slot(ln ? "ln_f.mean_rstd" : "norm.rstd", {T, ln ? 2 : 1}, 4, SlotClass::saved);
  b.act(ln ? "ln_f.out" : "norm.out", T, h, SlotClass::saved);  // lm_head's weight gradient needs it
  b.pointwise(static_cast<double>(T * h), kNormFlops);
  b.gemm(T, h, V);
  // fp32 logits; the fused cross-entropy overwrites them with their gradient.
  b.slot("logits", {T, V}, 4, SlotClass::saved, 0, true);
  b.slot("loss.lse", {T, 1}, 4, SlotClass::saved, 0, true);
  b.slot("loss.per_token", {T, 1}, 4, SlotClass::saved, 0, true);
  b.pointwise(static_cast<double>(T * V), kSoftmaxFlops);
  b.scratch(T * h * b.e());  // d(norm out)
  return p;
}

std::int64_t input_bytes(const ModelSpec& m, const RunSettings& run) {
  const std::int64_t T = micro_batch(run).tokens();
  // tokens, targets, position ids (int32), loss mask (uint8), cu_seqlens (int32, at most one
  // document per token, so T + 1 entries is the capacity a batch may need).
  std::int64_t bytes = T * (4 + 4 + 4 + 1) + (T + 1) * 4;
  // Image patches as pixels, kept for the patch-embedding weight gradient.
  const auto& v = m.vision;
  bytes += run.train.micro_batch_size * run.data.vision_tokens * v.num_channels * v.patch_size * v.patch_size *
           run.activation_bytes();
  return bytes;
}

}  // namespace llmlab
