// The one op interface model code is written against. A backend owns a device's memory and
// implements every op the transformer layers need; the CPU backend (ops/cpu) computes in fp32
// with oneDNN GEMMs and OpenMP, a CUDA backend implements the same calls. Model code never
// knows which device it runs on.
//
// Conventions (llm.c style): row-major, T = tokens of a micro-batch (rows flattened without
// padding), C = channels, V = vocabulary, H = heads, D = head dim. Pointers are device
// pointers of this backend. "+=" means the op accumulates into its output (gradients of
// weights always accumulate, across micro-batches too); "=" means it overwrites. Every op is
// deterministic: the same inputs, shapes and thread count give bit-identical outputs, which is
// what makes recomputation and resume exact.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spec/settings.hpp"

namespace llmlab {

// Variable-length (packed) attention over T tokens holding `docs` documents back to back:
// document i is tokens [cu_seqlens[i], cu_seqlens[i+1]). Tokens attend only within their
// document (and, when causal, only to earlier positions). q is [T, Hq, D]; k and v are
// [T, Hkv, D] with Hq a multiple of Hkv (grouped-query: q head h reads kv head h / (Hq/Hkv)).
struct AttentionShape {
  std::int64_t tokens = 0;   // T
  std::int64_t docs = 0;
  std::int64_t max_seqlen = 0;
  std::int64_t heads = 0;     // Hq
  std::int64_t kv_heads = 0;  // Hkv
  std::int64_t head_dim = 0;  // D
  bool causal = true;
  float scale = 0;            // softmax scale, usually 1/sqrt(D)
};

// Decode attention: one new query per row against that row's sequence in a KV cache, the
// step of autoregressive generation after the prompt (rl rollouts). The cache holds, per
// sequence, `capacity` token rows of [Hkv, D] (post-RoPE keys), i.e. k_cache and v_cache are
// [sequences, capacity, Hkv, D]: the token-major layout of training's k and v, so a packed
// prefill's [T, Hkv, D] rows of one document go into the cache with one copy.
struct DecodeAttentionShape {
  std::int64_t rows = 0;      // N: queries, one per sequence being extended
  std::int64_t capacity = 0;  // token rows per cached sequence
  std::int64_t heads = 0;     // Hq
  std::int64_t kv_heads = 0;  // Hkv, divides Hq (q head h reads kv head h / (Hq/Hkv))
  std::int64_t head_dim = 0;  // D
  float scale = 0;            // softmax scale, usually 1/sqrt(D)
};

// Bytes of the materialised probabilities (naive kernel): Hq * sum_i len_i^2 floats, laid out
// document by document, head by head, [len, len] each. The plan sizes the slot for the worst
// case, rows * Hq * s^2.
std::int64_t naive_attention_probs_elements(const std::int32_t* cu_seqlens_host, std::int64_t docs,
                                            std::int64_t heads);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // --- memory -----------------------------------------------------------------------------
  virtual void* allocate(std::size_t bytes) = 0;  // 64-byte aligned; throws on failure
  virtual void release(void* p) = 0;
  virtual void copy_from_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy(float* dst, const float* src, std::int64_t n) = 0;
  virtual void zero(float* x, std::int64_t n) = 0;

  // --- dense ------------------------------------------------------------------------------
  // C[M,N] = alpha * op(A) op(B) + beta * C, row-major with leading dimensions; op(A) is
  // [M,K] (A stored [K,M] when trans_a), op(B) is [K,N] (B stored [N,K] when trans_b).
  virtual void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                    const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                    std::int64_t ldc) = 0;
  // y[t, 0:N] += bias (row stride ld) ; dbias += sum over t of dy[t, 0:N].
  virtual void bias_forward(float* y, const float* bias, std::int64_t T, std::int64_t N, std::int64_t ld) = 0;
  virtual void bias_backward(const float* dy, float* dbias, std::int64_t T, std::int64_t N, std::int64_t ld) = 0;

  // --- norms --------------------------------------------------------------------------------
  // LayerNorm over C: out = (x - mean) * rstd * w + b; saves mean_rstd [T, 2].
  virtual void layernorm_forward(const float* x, const float* w, const float* b, float* out, float* mean_rstd,
                                 std::int64_t T, std::int64_t C, float eps) = 0;
  // Rebuilds `out` from saved statistics, bit-identical to layernorm_forward's.
  virtual void layernorm_apply(const float* x, const float* w, const float* b, const float* mean_rstd, float* out,
                               std::int64_t T, std::int64_t C) = 0;
  // dx += ..., dw += ..., db += ...
  virtual void layernorm_backward(const float* dout, const float* x, const float* w, const float* mean_rstd,
                                  float* dx, float* dw, float* db, std::int64_t T, std::int64_t C) = 0;
  // RMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps); saves rstd [T].
  virtual void rmsnorm_forward(const float* x, const float* w, float* out, float* rstd, std::int64_t T,
                               std::int64_t C, float eps) = 0;
  virtual void rmsnorm_apply(const float* x, const float* w, const float* rstd, float* out, std::int64_t T,
                             std::int64_t C) = 0;
  virtual void rmsnorm_backward(const float* dout, const float* x, const float* w, const float* rstd, float* dx,
                                float* dw, std::int64_t T, std::int64_t C) = 0;

  // --- pointwise ------------------------------------------------------------------------------
  // Rotary embedding in place on x [T, H, D], Hugging Face's rotate_half layout (dimension i
  // pairs with i + D/2), angle pos[t] * theta^(-2i/D). backward rotates the gradient back.
  virtual void rope_forward(float* x, const std::int32_t* pos, std::int64_t T, std::int64_t H, std::int64_t D,
                            float theta) = 0;
  virtual void rope_backward(float* dx, const std::int32_t* pos, std::int64_t T, std::int64_t H, std::int64_t D,
                             float theta) = 0;
  // GELU, tanh approximation (GPT-2's gelu_new): out = gelu(x); dx = dout * gelu'(x).
  virtual void gelu_forward(const float* x, float* out, std::int64_t n) = 0;
  virtual void gelu_backward(const float* dout, const float* x, float* dx, std::int64_t n) = 0;
  // SwiGLU: out = silu(gate) * up; dgate = ..., dup = ... (overwritten).
  virtual void swiglu_forward(const float* gate, const float* up, float* out, std::int64_t n) = 0;
  virtual void swiglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup,
                               std::int64_t n) = 0;
  // out[t] = wte[ids[t]] (+ wpe[pos[t]] when wpe is not null); backward accumulates.
  virtual void embedding_forward(const std::int32_t* ids, const std::int32_t* pos, const float* wte,
                                 const float* wpe, float* out, std::int64_t T, std::int64_t C) = 0;
  virtual void embedding_backward(const float* dout, const std::int32_t* ids, const std::int32_t* pos, float* dwte,
                                  float* dwpe, std::int64_t T, std::int64_t C) = 0;

  // --- loss ---------------------------------------------------------------------------------
  // Fused softmax cross-entropy over logits [T, V], in place: a token counts when
  // targets[t] >= 0 and mask[t] != 0. Writes losses[t] (-log p(target), 0 when not counted)
  // and lse[t]; when grad_scale != 0, overwrites logits with grad_scale * (softmax - onehot)
  // on counted rows and 0 elsewhere. Returns the sum of counted losses (float64).
  virtual double cross_entropy(float* logits, const std::int32_t* targets, const std::uint8_t* mask, float* losses,
                               float* lse, std::int64_t T, std::int64_t V, float grad_scale) = 0;
  // The backward on its own, for losses whose per-token weight is known only after the
  // forward (RL: a token's weight depends on its sequence's log-probability): logits [T, V]
  // (left intact by a cross_entropy call with grad_scale 0) become
  // dloss[t] * (softmax - onehot(target)), exactly what cross_entropy writes for
  // grad_scale = dloss[t]; rows with target < 0 or dloss[t] == 0 become 0. dloss is host
  // memory [T].
  virtual void cross_entropy_backward(float* logits, const std::int32_t* targets, const float* dloss, std::int64_t T,
                                      std::int64_t V) = 0;

  // --- attention ------------------------------------------------------------------------------
  // out [T, Hq, D] = softmax(scale * q k^T + mask) v per document. flash: tiled online
  // softmax, saves lse [Hq, T] only. naive: materialises probabilities into `probs`
  // (naive_attention_probs_elements floats) and lse unless it is null (its backward
  // reads only probs). cu_seqlens is a device pointer;
  // cu_seqlens_host the same values on the host.
  virtual void attention_forward(AttentionImpl impl, const AttentionShape& s, const std::int32_t* cu_seqlens,
                                 const std::int32_t* cu_seqlens_host, const float* q, const float* k, const float* v,
                                 float* out, float* lse, float* probs) = 0;
  // dq, dk, dv overwritten. flash: `scratch` holds Hq * T floats (D = rowsum(dO * O)).
  // naive: `probs` as saved by forward, `scratch` holds as many floats as probs (dP).
  virtual void attention_backward(AttentionImpl impl, const AttentionShape& s, const std::int32_t* cu_seqlens,
                                  const std::int32_t* cu_seqlens_host, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse, const float* probs,
                                  const float* dout, float* dq, float* dk, float* dv, float* scratch) = 0;

  // out [N, Hq, D] = softmax(scale * q k^T) v for each row n over keys [0, lengths[n]) of cache
  // sequence seq[n] (row n itself when seq is null); lengths count the new token, whose k and v
  // the caller has already written at position lengths[n] - 1. A row with length 0 gives 0.
  // q [N, Hq, D]; k_cache, v_cache [sequences, capacity, Hkv, D]; seq, lengths [N] (device).
  virtual void attention_decode(const DecodeAttentionShape& s, const float* q, const float* k_cache,
                                const float* v_cache, const std::int32_t* seq, const std::int32_t* lengths,
                                float* out) = 0;

  // --- optimizer and reductions -----------------------------------------------------------------
  // Sum of squares in float64 with a fixed reduction order (independent of thread count).
  virtual double sum_squares(const float* x, std::int64_t n) = 0;
  virtual void scale(float* x, std::int64_t n, float alpha) = 0;
  // One AdamW step (Loshchilov & Hutter, decoupled decay) on n elements at 1-based `step`:
  // as PyTorch orders it: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^step), v_hat likewise.
  virtual void adamw(float* p, const float* g, float* m, float* v, std::int64_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, std::int64_t step) = 0;
};

}  // namespace llmlab
