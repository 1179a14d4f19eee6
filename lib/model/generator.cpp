#include "model/generator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "model/decoder_block.hpp"
#include "model/embedding_head.hpp"
#include "model/linear.hpp"

namespace llmlab {

// One prefill or decode pass: `rows` tokens, their host description and device copies.
struct Generator::Pass {
  bool prefill = false;
  std::int64_t rows = 0;
  std::vector<std::int32_t> seq_host;  // prefill: per prompt; decode: per row
  std::vector<std::int32_t> cu_host;   // prefill: prompt boundaries [prompts + 1]
  std::vector<std::int64_t> out_rows;  // the rows whose logits are returned, in output order
  std::int64_t max_seqlen = 0;
  Tracked<std::int32_t> ids, positions, seq, lengths, cu;  // device: [rows] x2, [rows] x2, [prompts + 1]
};

namespace {

constexpr Category kCat = Category::activations;

bool is_gpt2(const ModelSpec& m) { return m.arch == Arch::gpt2; }

Tracked<std::int32_t> upload(Backend& be, TrackedMemory& mem, const std::vector<std::int32_t>& host) {
  Tracked<std::int32_t> d(mem, std::max<std::int64_t>(1, static_cast<std::int64_t>(host.size())), kCat);
  if (!host.empty()) be.copy_from_host(d.get(), host.data(), host.size() * sizeof(std::int32_t));
  return d;
}

// Pre-attention / pre-MLP norm: LayerNorm (GPT-2) or RMSNorm (Llama); stats [rows, 2] scratch.
void norm(Backend& be, const ModelSpec& m, const float* x, const ParamSlice& w, const ParamSlice& b, float* out,
          float* stats, std::int64_t rows) {
  const auto eps = static_cast<float>(m.norm_eps);
  if (is_gpt2(m)) be.layernorm_forward(x, w.w, b.w, out, stats, rows, m.hidden_size, eps);
  else be.rmsnorm_forward(x, w.w, out, stats, rows, m.hidden_size, eps);
}

}  // namespace

Generator::Generator(const ModelSpec& model, const Weights& weights, Backend& backend, TrackedMemory& mem,
                     std::int64_t sequences, std::int64_t capacity)
    : m_(model), w_(weights), be_(backend), mem_(mem), cache_(model, mem, sequences, capacity) {
  if (m_.is_moe() || m_.is_mla() || m_.qk_norm || m_.has_vision())
    throw Error(fmt::format("generation supports dense GPT-2 and Llama decoders; {} has MoE, MLA, qk-norm or vision "
                            "layers",
                            m_.name));
  if (w_.params_sharded()) throw Error("generation needs the whole parameters, not a ZeRO-3 shard");
  if (is_gpt2(m_) && capacity > m_.max_position_embeddings)
    throw Error(fmt::format("generation capacity {} exceeds the {} learned positions of {}", capacity,
                            m_.max_position_embeddings, m_.name));
}

void Generator::check_sequence(std::int32_t seq) const {
  if (seq < 0 || seq >= cache_.sequences())
    throw Error(fmt::format("generation: sequence {} outside the cache's {}", seq, cache_.sequences()));
}

void Generator::prefill(const std::vector<std::int32_t>& seqs, const std::vector<std::vector<std::int32_t>>& prompts,
                        std::vector<float>& logits) {
  if (seqs.size() != prompts.size()) throw Error("generation: prefill needs one sequence slot per prompt");
  Pass pass;
  pass.prefill = true;
  pass.seq_host = seqs;
  pass.cu_host = {0};
  std::vector<std::int32_t> ids, positions;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto len = static_cast<std::int64_t>(prompts[i].size());
    check_sequence(seqs[i]);
    if (len == 0 || len > cache_.capacity())
      throw Error(fmt::format("generation: prompt {} has {} tokens; the cache holds 1 to {}", i, len,
                              cache_.capacity()));
    ids.insert(ids.end(), prompts[i].begin(), prompts[i].end());
    for (std::int32_t p = 0; p < len; ++p) positions.push_back(p);
    pass.cu_host.push_back(pass.cu_host.back() + static_cast<std::int32_t>(len));
    pass.out_rows.push_back(pass.cu_host.back() - 1);
    pass.max_seqlen = std::max(pass.max_seqlen, len);
  }
  for (std::size_t i = 0; i < seqs.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (seqs[i] == seqs[j]) throw Error(fmt::format("generation: sequence {} listed twice", seqs[i]));
  pass.rows = static_cast<std::int64_t>(ids.size());
  pass.ids = upload(be_, mem_, ids);
  pass.positions = upload(be_, mem_, positions);
  pass.cu = upload(be_, mem_, pass.cu_host);
  run(pass, logits);
  for (std::size_t i = 0; i < seqs.size(); ++i)
    cache_.set_length(seqs[i], static_cast<std::int32_t>(prompts[i].size()));
}

void Generator::copy_sequence(std::int32_t from, std::int32_t to) {
  check_sequence(from);
  check_sequence(to);
  if (from == to) return;
  const std::int64_t rows = cache_.length(from) * cache_.row_floats();
  for (std::int64_t l = 0; l < m_.num_layers; ++l) {
    be_.copy(cache_.row(cache_.keys(l), to, 0), cache_.row(cache_.keys(l), from, 0), rows);
    be_.copy(cache_.row(cache_.values(l), to, 0), cache_.row(cache_.values(l), from, 0), rows);
  }
  cache_.set_length(to, cache_.length(from));
}

void Generator::decode(const std::vector<std::int32_t>& seqs, const std::vector<std::int32_t>& tokens,
                       std::vector<float>& logits) {
  if (seqs.size() != tokens.size()) throw Error("generation: decode needs one token per sequence");
  Pass pass;
  pass.seq_host = seqs;
  pass.rows = static_cast<std::int64_t>(seqs.size());
  std::vector<std::int32_t> positions, lengths;
  for (std::size_t n = 0; n < seqs.size(); ++n) {
    check_sequence(seqs[n]);
    for (std::size_t j = 0; j < n; ++j)
      if (seqs[n] == seqs[j]) throw Error(fmt::format("generation: sequence {} listed twice", seqs[n]));
    const std::int32_t pos = cache_.length(seqs[n]);  // the new token's absolute position
    if (pos == 0) throw Error(fmt::format("generation: sequence {} was never prefilled", seqs[n]));
    if (pos >= cache_.capacity())
      throw Error(fmt::format("generation: sequence {} is full ({} tokens)", seqs[n], cache_.capacity()));
    positions.push_back(pos);
    lengths.push_back(pos + 1);
    pass.out_rows.push_back(static_cast<std::int64_t>(n));
  }
  if (pass.rows == 0) {
    logits.clear();
    return;
  }
  pass.ids = upload(be_, mem_, tokens);
  pass.positions = upload(be_, mem_, positions);
  pass.seq = upload(be_, mem_, seqs);
  pass.lengths = upload(be_, mem_, lengths);
  run(pass, logits);
  for (std::size_t n = 0; n < seqs.size(); ++n) cache_.set_length(seqs[n], lengths[n]);
}

void Generator::run(Pass& pass, std::vector<float>& logits) {
  const std::int64_t R = pass.rows, C = m_.hidden_size, V = m_.vocab_size;
  const auto n = static_cast<std::int64_t>(pass.out_rows.size());
  Tracked<float> x(mem_, R * C, kCat);  // the residual stream
  const EmbeddingParams ep = embedding_params(w_, m_);
  be_.embedding_forward(pass.ids.get(), pass.positions.get(), ep.wte.w, ep.wpe.w, x.get(), R, C);
  for (std::int64_t l = 0; l < m_.num_layers; ++l) layer(pass, l, x.get());

  // Head on the rows that need logits only: the norm is per row, so this equals normalising
  // every row as training's head does and keeping these.
  Tracked<float> last(mem_, n * C, kCat), normed(mem_, n * C, kCat), stats(mem_, 2 * n, kCat), out(mem_, n * V, kCat);
  for (std::int64_t i = 0; i < n; ++i)
    be_.copy(last.get() + i * C, x.get() + pass.out_rows[static_cast<std::size_t>(i)] * C, C);
  const HeadParams hp = head_params(w_, m_);
  norm(be_, m_, last.get(), hp.norm_w, hp.norm_b, normed.get(), stats.get(), n);
  be_.gemm(false, true, n, V, C, 1.0f, normed.get(), C, hp.lm_head.w, C, 0.0f, out.get(), V);
  logits.resize(static_cast<std::size_t>(n * V));
  be_.copy_to_host(logits.data(), out.get(), logits.size() * sizeof(float));
}

// One decoder layer over the pass's rows, in place on the residual stream x [rows, C]; the
// operations and their order are block_forward's, with the attention core swapped for the
// cache: prefill attends within each prompt (flash, causal) and stores its k and v rows,
// decode stores the new row and attends to the whole cached sequence.
void Generator::layer(const Pass& pass, std::int64_t l, float* x) {
  const BlockParams p = block_params(w_, m_, l);
  const std::int64_t R = pass.rows, C = m_.hidden_size, Hq = m_.num_heads, Hkv = m_.num_kv_heads, D = m_.head_dim;
  const std::int64_t I = m_.intermediate_size, kv = Hkv * D;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  Tracked<float> h(mem_, R * C, kCat), stats(mem_, 2 * R, kCat), q(mem_, R * Hq * D, kCat), k(mem_, R * kv, kCat),
      v(mem_, R * kv, kCat), attn(mem_, R * Hq * D, kCat);
  norm(be_, m_, x, p.norm1_w, p.norm1_b, h.get(), stats.get(), R);
  linear_forward(be_, p.q, h.get(), q.get(), R);
  linear_forward(be_, p.k, h.get(), k.get(), R);
  linear_forward(be_, p.v, h.get(), v.get(), R);
  if (!is_gpt2(m_)) {  // RoPE at each token's absolute position; the cache keeps rotated keys
    const auto theta = static_cast<float>(m_.rope_theta);
    be_.rope_forward(q.get(), pass.positions.get(), R, Hq, D, theta);
    be_.rope_forward(k.get(), pass.positions.get(), R, Hkv, D, theta);
  }
  float* keys = cache_.keys(l);
  float* values = cache_.values(l);
  if (pass.prefill) {
    for (std::size_t i = 0; i + 1 < pass.cu_host.size(); ++i) {
      const std::int64_t begin = pass.cu_host[i], len = pass.cu_host[i + 1] - begin;
      be_.copy(cache_.row(keys, pass.seq_host[i], 0), k.get() + begin * kv, len * kv);
      be_.copy(cache_.row(values, pass.seq_host[i], 0), v.get() + begin * kv, len * kv);
    }
    AttentionShape s;
    s.tokens = R;
    s.docs = static_cast<std::int64_t>(pass.cu_host.size()) - 1;
    s.max_seqlen = pass.max_seqlen;
    s.heads = Hq;
    s.kv_heads = Hkv;
    s.head_dim = D;
    s.causal = true;
    s.scale = scale;
    Tracked<float> lse(mem_, Hq * R, kCat);
    be_.attention_forward(AttentionImpl::flash, s, pass.cu.get(), pass.cu_host.data(), q.get(), k.get(), v.get(),
                          attn.get(), lse.get(), nullptr);
  } else {
    for (std::int64_t n = 0; n < R; ++n) {
      const std::int64_t seq = pass.seq_host[static_cast<std::size_t>(n)], pos = cache_.length(seq);
      be_.copy(cache_.row(keys, seq, pos), k.get() + n * kv, kv);
      be_.copy(cache_.row(values, seq, pos), v.get() + n * kv, kv);
    }
    const DecodeAttentionShape s{R, cache_.capacity(), Hq, Hkv, D, scale};
    be_.attention_decode(s, q.get(), keys, values, pass.seq.get(), pass.lengths.get(), attn.get());
  }
  linear_forward(be_, p.o, attn.get(), x, R, 1.0f);  // x += attn W_o: the residual after attention

  norm(be_, m_, x, p.norm2_w, p.norm2_b, h.get(), stats.get(), R);
  Tracked<float> fc(mem_, R * I, kCat), act(mem_, R * I, kCat);
  if (is_gpt2(m_)) {
    linear_forward(be_, p.fc, h.get(), fc.get(), R);
    be_.gelu_forward(fc.get(), act.get(), R * I);
  } else {
    Tracked<float> up(mem_, R * I, kCat);
    linear_forward(be_, p.gate, h.get(), fc.get(), R);
    linear_forward(be_, p.fc, h.get(), up.get(), R);
    be_.swiglu_forward(fc.get(), up.get(), act.get(), R * I);
  }
  linear_forward(be_, p.down, act.get(), x, R, 1.0f);  // x += mlp(x): the layer's output
}

}  // namespace llmlab
