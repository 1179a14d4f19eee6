#include "model/decoder_block.hpp"

#include <fmt/format.h>

#include <cmath>

#include "core/error.hpp"

namespace llmlab {

BlockParams block_params(const Weights& w, const ModelSpec& m, std::int64_t layer) {
  BlockParams p;
  const std::int64_t C = m.hidden_size, D = m.head_dim, q = m.num_heads * D, kv = m.num_kv_heads * D;
  if (m.arch == Arch::gpt2) {
    const std::string pre = fmt::format("transformer.h.{}.", layer);
    p.norm1_w = w.get(pre + "ln_1.weight");
    p.norm1_b = w.get(pre + "ln_1.bias");
    p.norm2_w = w.get(pre + "ln_2.weight");
    p.norm2_b = w.get(pre + "ln_2.bias");
    // c_attn is [C, q + 2 kv]: q, k and v are column slices of one Conv1D.
    const ParamSlice attn = w.get(pre + "attn.c_attn.weight"), attn_b = w.find(pre + "attn.c_attn.bias");
    const std::int64_t ld = q + 2 * kv;
    auto slice = [&](std::int64_t col, std::int64_t width) {
      return Linear::conv1d(attn.w + col, attn.g + col, attn_b.w ? attn_b.w + col : nullptr,
                            attn_b.g ? attn_b.g + col : nullptr, C, width, ld);
    };
    p.q = slice(0, q);
    p.k = slice(q, kv);
    p.v = slice(q + kv, kv);
    auto conv = [&](const std::string& name, std::int64_t in, std::int64_t out) {
      const ParamSlice wt = w.get(pre + name + ".weight"), b = w.find(pre + name + ".bias");
      return Linear::conv1d(wt.w, wt.g, b.w, b.g, in, out, out);
    };
    p.o = conv("attn.c_proj", q, C);
    p.fc = conv("mlp.c_fc", C, m.intermediate_size);
    p.down = conv("mlp.c_proj", m.intermediate_size, C);
    return p;
  }
  const std::string pre = fmt::format("model.layers.{}.", layer);
  p.norm1_w = w.get(pre + "input_layernorm.weight");
  p.norm2_w = w.get(pre + "post_attention_layernorm.weight");
  auto dense = [&](const std::string& name, std::int64_t in, std::int64_t out) {
    const ParamSlice wt = w.get(pre + name + ".weight"), b = w.find(pre + name + ".bias");
    return Linear::dense(wt.w, wt.g, b.w, b.g, in, out);
  };
  p.q = dense("self_attn.q_proj", C, q);
  p.k = dense("self_attn.k_proj", C, kv);
  p.v = dense("self_attn.v_proj", C, kv);
  p.o = dense("self_attn.o_proj", q, C);
  p.gate = dense("mlp.gate_proj", C, m.intermediate_size);
  p.fc = dense("mlp.up_proj", C, m.intermediate_size);
  p.down = dense("mlp.down_proj", m.intermediate_size, C);
  return p;
}

BlockSlots BlockSlots::of(const BlockProfile& profile, const ModelSpec& m, AttentionImpl impl) {
  auto find = [&](const std::string& name) {
    for (std::size_t i = 0; i < profile.slots.size(); ++i)
      if (profile.slots[i].name == name) return static_cast<int>(i);
    throw Error(fmt::format("internal: the plan's {} block has no activation slot '{}'", profile.kind, name));
  };
  const bool gpt2 = m.arch == Arch::gpt2;
  BlockSlots s;
  s.input = find("input");
  s.norm1_stats = find(gpt2 ? "ln_1.mean_rstd" : "attn_norm.rstd");
  s.norm1_out = find(gpt2 ? "ln_1.out" : "attn_norm.out");
  s.q = find("attn.q");
  s.k = find("attn.k");
  s.v = find("attn.v");
  if (impl == AttentionImpl::flash) s.lse = find("attn.lse");
  else s.probs = find("attn.probs");
  s.attn_out = find("attn.out");
  s.mid = find("mlp.input");
  s.norm2_stats = find(gpt2 ? "ln_2.mean_rstd" : "mlp_norm.rstd");
  s.norm2_out = find(gpt2 ? "ln_2.out" : "mlp_norm.out");
  s.fc = find(gpt2 ? "mlp.fc" : "mlp.gate");
  if (!gpt2) s.up = find("mlp.up");
  s.act = find(gpt2 ? "mlp.gelu" : "mlp.act");
  if (profile.slots.size() != static_cast<std::size_t>(gpt2 ? 13 : 14))
    throw Error(fmt::format("internal: the plan's {} block has {} slots; the layer code knows {}", profile.kind,
                            profile.slots.size(), gpt2 ? 13 : 14));
  return s;
}

namespace {

float* slot(SlotPointers& s, int index) { return index < 0 ? nullptr : s[static_cast<std::size_t>(index)]; }

AttentionShape attention_shape(const BlockContext& c) {
  const ModelSpec& m = c.model;
  AttentionShape a;
  a.tokens = c.batch.tokens;
  a.docs = c.batch.docs;
  a.max_seqlen = c.batch.max_seqlen;
  a.heads = m.num_heads;
  a.kv_heads = m.num_kv_heads;
  a.head_dim = m.head_dim;
  a.causal = c.run.train.causal;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(m.head_dim)));
  return a;
}

bool gpt2(const BlockContext& c) { return c.model.arch == Arch::gpt2; }
float eps(const BlockContext& c) { return static_cast<float>(c.model.norm_eps); }
float theta(const BlockContext& c) { return static_cast<float>(c.model.rope_theta); }

void norm_forward(const BlockContext& c, const float* x, const ParamSlice& w, const ParamSlice& b, float* out,
                  float* stats) {
  const std::int64_t T = c.batch.tokens, C = c.model.hidden_size;
  if (gpt2(c)) c.be.layernorm_forward(x, w.w, b.w, out, stats, T, C, eps(c));
  else c.be.rmsnorm_forward(x, w.w, out, stats, T, C, eps(c));
}

void norm_apply(const BlockContext& c, const float* x, const ParamSlice& w, const ParamSlice& b, const float* stats,
                float* out) {
  const std::int64_t T = c.batch.tokens, C = c.model.hidden_size;
  if (gpt2(c)) c.be.layernorm_apply(x, w.w, b.w, stats, out, T, C);
  else c.be.rmsnorm_apply(x, w.w, stats, out, T, C);
}

void norm_backward(const BlockContext& c, const float* dout, const float* x, const ParamSlice& w,
                   const ParamSlice& b, const float* stats, float* dx) {
  const std::int64_t T = c.batch.tokens, C = c.model.hidden_size;
  if (gpt2(c)) c.be.layernorm_backward(dout, x, w.w, stats, dx, w.g, b.g, T, C);
  else c.be.rmsnorm_backward(dout, x, w.w, stats, dx, w.g, T, C);
}

void activation_forward(const BlockContext& c, SlotPointers& s) {
  const std::int64_t n = c.batch.tokens * c.model.intermediate_size;
  if (gpt2(c)) c.be.gelu_forward(slot(s, c.at.fc), slot(s, c.at.act), n);
  else c.be.swiglu_forward(slot(s, c.at.fc), slot(s, c.at.up), slot(s, c.at.act), n);
}

void attention_forward(const BlockContext& c, SlotPointers& s) {
  c.be.attention_forward(c.run.train.attention, attention_shape(c), c.batch.cu_seqlens, c.batch.cu_seqlens_host,
                         slot(s, c.at.q), slot(s, c.at.k), slot(s, c.at.v), slot(s, c.at.attn_out),
                         slot(s, c.at.lse), slot(s, c.at.probs));
}

}  // namespace

void block_forward(const BlockContext& c, const BlockParams& p, SlotPointers& s, float* output) {
  Backend& be = c.be;
  const std::int64_t T = c.batch.tokens, C = c.model.hidden_size;
  const float* x = slot(s, c.at.input);
  float* h1 = slot(s, c.at.norm1_out);
  norm_forward(c, x, p.norm1_w, p.norm1_b, h1, slot(s, c.at.norm1_stats));
  linear_forward(be, p.q, h1, slot(s, c.at.q), T);
  linear_forward(be, p.k, h1, slot(s, c.at.k), T);
  linear_forward(be, p.v, h1, slot(s, c.at.v), T);
  if (!gpt2(c)) {
    be.rope_forward(slot(s, c.at.q), c.batch.positions, T, c.model.num_heads, c.model.head_dim, theta(c));
    be.rope_forward(slot(s, c.at.k), c.batch.positions, T, c.model.num_kv_heads, c.model.head_dim, theta(c));
  }
  attention_forward(c, s);
  // mid = x + attn W_o: the residual stream after attention.
  float* mid = slot(s, c.at.mid);
  be.copy(mid, x, T * C);
  linear_forward(be, p.o, slot(s, c.at.attn_out), mid, T, 1.0f);

  float* h2 = slot(s, c.at.norm2_out);
  norm_forward(c, mid, p.norm2_w, p.norm2_b, h2, slot(s, c.at.norm2_stats));
  if (gpt2(c)) {
    linear_forward(be, p.fc, h2, slot(s, c.at.fc), T);
  } else {  // the fc slot holds gate_proj's output, the up slot up_proj's
    linear_forward(be, p.gate, h2, slot(s, c.at.fc), T);
    linear_forward(be, p.fc, h2, slot(s, c.at.up), T);
  }
  activation_forward(c, s);
  if (!output) return;
  be.copy(output, mid, T * C);
  linear_forward(be, p.down, slot(s, c.at.act), output, T, 1.0f);
}

void block_rebuild(const BlockContext& c, const BlockParams& p, SlotPointers& s, LayerMode mode) {
  if (mode == LayerMode::keep || mode == LayerMode::recompute) return;
  if (c.at.probs >= 0) attention_forward(c, s);  // the only core slot: the materialised probabilities
  if (mode != LayerMode::drop_pointwise) return;
  norm_apply(c, slot(s, c.at.input), p.norm1_w, p.norm1_b, slot(s, c.at.norm1_stats), slot(s, c.at.norm1_out));
  norm_apply(c, slot(s, c.at.mid), p.norm2_w, p.norm2_b, slot(s, c.at.norm2_stats), slot(s, c.at.norm2_out));
  activation_forward(c, s);
}

void block_backward(const BlockContext& c, const BlockParams& p, SlotPointers& s, float* dres, float* dinput,
                    TrackedMemory& mem) {
  Backend& be = c.be;
  const ModelSpec& m = c.model;
  const std::int64_t T = c.batch.tokens, cap = c.batch.capacity, C = m.hidden_size, I = m.intermediate_size;
  const std::int64_t q_width = m.num_heads * m.head_dim, kv_width = m.num_kv_heads * m.head_dim;
  const Category tmp = Category::temporaries;
  {
    // MLP: dres = d(output) = d(mid) from the residual path; the MLP branch adds to it.
    Tracked<float> dact(mem, cap * I, tmp), dfc(mem, cap * I, tmp), dup, dh2(mem, cap * C, tmp);
    if (!gpt2(c)) dup = Tracked<float>(mem, cap * I, tmp);
    linear_backward(be, p.down, slot(s, c.at.act), dres, dact.get(), 0.0f, T);
    if (gpt2(c)) {
      be.gelu_backward(dact.get(), slot(s, c.at.fc), dfc.get(), T * I);
      linear_backward(be, p.fc, slot(s, c.at.norm2_out), dfc.get(), dh2.get(), 0.0f, T);
    } else {
      // fc slot holds gate, up slot holds up.
      be.swiglu_backward(dact.get(), slot(s, c.at.fc), slot(s, c.at.up), dfc.get(), dup.get(), T * I);
      linear_backward(be, p.gate, slot(s, c.at.norm2_out), dfc.get(), dh2.get(), 0.0f, T);
      linear_backward(be, p.fc, slot(s, c.at.norm2_out), dup.get(), dh2.get(), 1.0f, T);
    }
    norm_backward(c, dh2.get(), slot(s, c.at.mid), p.norm2_w, p.norm2_b, slot(s, c.at.norm2_stats), dres);
  }
  // Attention: dres now holds d(mid); the residual path carries it to d(input).
  const bool flash = c.run.train.attention == AttentionImpl::flash;
  const std::int64_t probs = flash ? 0 : c.batch.rows * m.num_heads * c.batch.seq_len * c.batch.seq_len;
  Tracked<float> dattn(mem, cap * q_width, tmp), dq(mem, cap * q_width, tmp), dk(mem, cap * kv_width, tmp),
      dv(mem, cap * kv_width, tmp), core(mem, flash ? m.num_heads * cap : probs, tmp), dh1(mem, cap * C, tmp);
  linear_backward(be, p.o, slot(s, c.at.attn_out), dres, dattn.get(), 0.0f, T);
  be.attention_backward(c.run.train.attention, attention_shape(c), c.batch.cu_seqlens, c.batch.cu_seqlens_host,
                        slot(s, c.at.q), slot(s, c.at.k), slot(s, c.at.v), slot(s, c.at.attn_out), slot(s, c.at.lse),
                        slot(s, c.at.probs), dattn.get(), dq.get(), dk.get(), dv.get(), core.get());
  if (!gpt2(c)) {
    be.rope_backward(dq.get(), c.batch.positions, T, m.num_heads, m.head_dim, theta(c));
    be.rope_backward(dk.get(), c.batch.positions, T, m.num_kv_heads, m.head_dim, theta(c));
  }
  const float* h1 = slot(s, c.at.norm1_out);
  linear_backward(be, p.q, h1, dq.get(), dh1.get(), 0.0f, T);
  linear_backward(be, p.k, h1, dk.get(), dh1.get(), 1.0f, T);
  linear_backward(be, p.v, h1, dv.get(), dh1.get(), 1.0f, T);
  be.copy(dinput, dres, T * C);
  norm_backward(c, dh1.get(), slot(s, c.at.input), p.norm1_w, p.norm1_b, slot(s, c.at.norm1_stats), dinput);
}

}  // namespace llmlab
