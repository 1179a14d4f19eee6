// CPU attention, fp32, varlen (documents back to back, given by cu_seqlens), causal or not,
// grouped-query. Two implementations behind one call:
// - flash: FlashAttention-2's tiled online softmax. A tile is W query rows (the vector lanes)
//   against kKeys keys; forward keeps out and lse only, backward recomputes P from lse.
// - naive: the materialised reference, probabilities [len, len] per document and head.
// Determinism: every output element is owned by one task whose work and summation order do
// not depend on the schedule, so results are bit-identical for any thread count. No atomics.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "ops/cpu/attention_simd.hpp"
#include "ops/cpu/cpu_backend.hpp"

namespace llmlab {
namespace {

using namespace attn;

// Tile sizes. First measured on the 2-core AMD EPYC (Zen 5, AVX-512) dev machine with one
// thread, causal single document T=1024, GFLOP/s per CPU-second (FlashAttention's FLOP
// convention), forward / backward, best of 2 runs:
//   W x keys     D=64 (Hq=12)   D=128 (Hq=8, Hkv=2)
//   16 x 64       97 / 91        100 / 83
//   32 x 32      111 / 91        124 / 88
//   32 x 64      107 / 99        128 / 94
//   32 x 128     109 / 104       129 / 95
//   32 x 256     107 / 97        130 / 90
//   64 x 64      105 / 95        126 / 96
// Then with bench-attn on both threads (4 heads, causal, 16384 tokens per batch; GFLOP/s,
// median of 3, two runs each), where long documents showed the cost of streaming K and V:
//   W x keys   s     D=64 fwd / bwd      D=128 fwd / bwd
//   32 x 128   1k    217-223 / 200-222   226-243 / 192-198
//   32 x 128   16k   170-181 / 235-255   205-217 / 202-212
//   64 x 128   1k    221-223 / 204-206   237-251 / 207-218
//   64 x 128   16k   223-225 / 237-246   262     / 209-241
// 64 query rows read each K/V tile for twice the rows, which keeps 16k-token documents
// (8 MB of K and V per head) as fast as short ones. Per-thread tiles take
// (2 D + 2 kKeys) W floats: 128 KB at D = 128.
constexpr int kRows = 64;             // query rows per tile (W): four AVX-512 vectors
constexpr std::int64_t kKeys = 128;   // keys per tile

struct Doc {
  std::int64_t begin = 0;  // first token
  std::int64_t len = 0;
};

Doc doc_at(const std::int32_t* cu, std::int64_t i) { return {cu[i], cu[i + 1] - cu[i]}; }

// The tensors of one call and their strides; every task reads the pointers it needs.
struct Attn {
  std::int64_t T, Hq, Hkv, D, group;
  float scale;
  bool causal;
  const float *q, *k, *v;  // [T, Hq, D], [T, Hkv, D], [T, Hkv, D]
  std::int64_t ldq() const { return Hq * D; }  // row stride of q, out, dout, dq
  std::int64_t ldkv() const { return Hkv * D; }
  // Row t of head h of a [T, H, D] tensor with row stride ld.
  static std::int64_t at(std::int64_t t, std::int64_t h, std::int64_t ld, std::int64_t D) { return t * ld + h * D; }
};

Attn make_attn(const AttentionShape& s, const std::int32_t* cu, const float* q, const float* k, const float* v) {
  if (s.heads <= 0 || s.kv_heads <= 0 || s.heads % s.kv_heads != 0 || s.head_dim <= 0 || s.docs < 0)
    throw Error("attention: bad shape (heads " + std::to_string(s.heads) + ", kv_heads " +
                std::to_string(s.kv_heads) + ", head_dim " + std::to_string(s.head_dim) + ")");
  if (!cu) throw Error("attention: cu_seqlens_host is null");
  for (std::int64_t i = 0; i < s.docs; ++i)
    if (cu[i] < 0 || cu[i + 1] < cu[i] || cu[i + 1] > s.tokens)
      throw Error("attention: cu_seqlens is not increasing within [0, tokens] at document " + std::to_string(i));
  return {s.tokens, s.heads, s.kv_heads, s.head_dim, s.heads / s.kv_heads, s.scale, s.causal, q, k, v};
}

int team(int requested) { return requested > 0 ? requested : omp_get_max_threads(); }

// Rows [from, to) of a [T, H*D] tensor set to zero: tokens outside every document.
void zero_rows(float* x, std::int64_t from, std::int64_t to, std::int64_t width) {
  if (to > from) std::fill(x + from * width, x + to * width, 0.0f);
}
void zero_outside_docs(float* x, const std::int32_t* cu, std::int64_t docs, std::int64_t T, std::int64_t width) {
  const std::int64_t first = docs > 0 ? cu[0] : T;
  const std::int64_t last = docs > 0 ? cu[docs] : T;
  zero_rows(x, 0, first, width);
  zero_rows(x, last, T, width);
}

// Per-thread tile storage, 64-byte aligned, grown once to the largest request (128 KB for
// D = 128) and reused by every later call on that thread.
float* thread_tiles(std::size_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < floats + 16) buffer.resize(floats + 16);
  const auto misalign = reinterpret_cast<std::uintptr_t>(buffer.data()) % 64;
  return buffer.data() + (misalign ? (64 - misalign) / sizeof(float) : 0);
}

// ---- flash ---------------------------------------------------------------------------------

// xt [D, W] = alpha * x^T for the nr rows of x (stride ld), zero on the W - nr padding lanes.
void pack_transposed(const float* x, std::int64_t ld, std::int64_t nr, std::int64_t D, float alpha, float* xt) {
  for (std::int64_t r = 0; r < nr; ++r)
    for (std::int64_t d = 0; d < D; ++d) xt[d * kRows + r] = alpha * x[r * ld + d];
  for (std::int64_t d = 0; d < D; ++d) std::fill(xt + d * kRows + nr, xt + (d + 1) * kRows, 0.0f);
}

// Causal mask on a diagonal tile: key kb + c is after query qb + r when r < c + (kb - qb).
void mask_future(float* st, std::int64_t nc, std::int64_t kb_minus_qb) {
  for (std::int64_t c = 0; c < nc; ++c) {
    const std::int64_t first_visible = std::min<std::int64_t>(c + kb_minus_qb, kRows);
    for (std::int64_t r = 0; r < first_visible; ++r) st[c * kRows + r] = -kInf;
  }
}

// Scores of key block [kb, kb + nc) against the query tile at qb, future keys at -inf.
LLMLAB_ATTN_INLINE void tile_scores(const Attn& a, const float* keys, std::int64_t kb, std::int64_t nc,
                                    std::int64_t qb, const float* qt, float* st) {
  scores_tile<kRows>(keys + kb * a.ldkv(), a.ldkv(), nc, qt, a.D, st);
  if (a.causal && kb + nc - 1 > qb) mask_future(st, nc, kb - qb);
}

// One online-softmax step over a score tile S^T [nc, W]: turns it into exp(s - m_new),
// updates the running max m and sum l per lane, and returns in alpha = exp(m_old - m_new)
// the factor the output accumulator must be rescaled by.
LLMLAB_ATTN_INLINE void online_softmax(float* st, std::int64_t nc, float* m, float* l, float* alpha) {
  for (int v = 0; v < kRows; v += kLanes) {
    const V16 m_old = load(m + v);
    V16 m_new = m_old;
    for (std::int64_t c = 0; c < nc; ++c) m_new = vmax(m_new, load(st + c * kRows + v));
    V16 sum = splat(0.0f);
    for (std::int64_t c = 0; c < nc; ++c) {
      const V16 p = vexp(load(st + c * kRows + v) - m_new);
      store(st + c * kRows + v, p);
      sum += p;
    }
    const V16 rescale = vexp(m_old - m_new);
    store(alpha + v, rescale);
    store(l + v, load(l + v) * rescale + sum);
    store(m + v, m_new);
  }
}

// Forward of one query tile: rows [qb, qb + W) of document `doc` (fewer at its end), head h.
LLMLAB_ATTN_CLONES void flash_forward_tile(const Attn& a, Doc doc, std::int64_t h, std::int64_t qb, float* out,
                                           float* lse) {
  const std::int64_t D = a.D, nr = std::min<std::int64_t>(kRows, doc.len - qb), kvh = h / a.group;
  float* tiles = thread_tiles(static_cast<std::size_t>((2 * D + kKeys) * kRows + 3 * kRows));
  float* qt = tiles;                 // [D, W] scale * Q^T
  float* o = qt + D * kRows;         // [W, D] unnormalised output
  float* st = o + D * kRows;         // [kKeys, W] scores, then probabilities
  float* m = st + kKeys * kRows;     // [W] running max
  float* l = m + kRows;              // [W] running sum
  float* alpha = l + kRows;          // [W] rescale factor of this step
  pack_transposed(a.q + Attn::at(doc.begin + qb, h, a.ldq(), D), a.ldq(), nr, D, a.scale, qt);
  std::fill(o, o + nr * D, 0.0f);
  std::fill(m, m + kRows, -kInf);
  std::fill(l, l + kRows, 0.0f);

  const float* keys = a.k + Attn::at(doc.begin, kvh, a.ldkv(), D);
  const float* values = a.v + Attn::at(doc.begin, kvh, a.ldkv(), D);
  const std::int64_t key_end = a.causal ? qb + nr : doc.len;  // no tile above the diagonal
  for (std::int64_t kb = 0; kb < key_end; kb += kKeys) {
    const std::int64_t nc = std::min(kKeys, key_end - kb);
    tile_scores(a, keys, kb, nc, qb, qt, st);
    online_softmax(st, nc, m, l, alpha);
    for (std::int64_t r = 0; r < nr; ++r) {
#pragma omp simd
      for (std::int64_t d = 0; d < D; ++d) o[r * D + d] *= alpha[r];
    }
    accumulate_rows(st, 1, kRows, nr, nc, values + kb * a.ldkv(), a.ldkv(), o, D, D);  // O += P V
  }
  for (std::int64_t r = 0; r < nr; ++r) {
    const std::int64_t t = doc.begin + qb + r;
    const float inv = 1.0f / l[r];
    float* dst = out + Attn::at(t, h, a.ldq(), D);
#pragma omp simd
    for (std::int64_t d = 0; d < D; ++d) dst[d] = o[r * D + d] * inv;
    lse[h * a.T + t] = m[r] + std::log(l[r]);
  }
}

void flash_forward(const Attn& a, const std::int32_t* cu, std::int64_t docs, int threads, float* out, float* lse) {
#pragma omp parallel num_threads(threads)
  for (std::int64_t i = 0; i < docs; ++i) {
    const Doc doc = doc_at(cu, i);
    const std::int64_t tiles = (doc.len + kRows - 1) / kRows;
    // Last tiles first: under the causal mask they cost most, so the schedule balances.
#pragma omp for collapse(2) schedule(dynamic) nowait
    for (std::int64_t h = 0; h < a.Hq; ++h)
      for (std::int64_t b = 0; b < tiles; ++b) flash_forward_tile(a, doc, h, (tiles - 1 - b) * kRows, out, lse);
  }
}

// Gradients flowing through one (key tile, query tile) pair of head h: recomputes P from lse,
// then dV += P^T dO, dS = P (dP - Drow) scale, dK += dS^T Q, dQ += dS K.
struct BackwardIo {
  const float *out, *lse, *dout;  // [T, Hq, D], [Hq, T], [T, Hq, D]
  float *dq, *dk, *dv;            // [T, Hq, D], [T, Hkv, D], [T, Hkv, D]
  float* drow;                    // flash: [Hq, T] rowsum(dO * O), in the caller's scratch
};

LLMLAB_ATTN_INLINE void flash_backward_pair(const Attn& a, const BackwardIo& io, Doc doc, std::int64_t h,
                                            std::int64_t kb, std::int64_t nc, std::int64_t qb, float* tiles) {
  const std::int64_t D = a.D, ldq = a.ldq(), ldkv = a.ldkv(), kvh = h / a.group;
  const std::int64_t nr = std::min<std::int64_t>(kRows, doc.len - qb);
  float* qt = tiles;               // [D, W] scale * Q^T
  float* dout_t = qt + D * kRows;  // [D, W] dO^T
  float* pt = dout_t + D * kRows;  // [kKeys, W] P^T
  float* dst = pt + kKeys * kRows; // [kKeys, W] dP^T, then dS^T
  float* lse = dst + kKeys * kRows;  // [W] lse, +inf on padding lanes (so P = 0 there)
  float* drow = lse + kRows;         // [W]
  const std::int64_t q_row = Attn::at(doc.begin + qb, h, ldq, D);
  const std::int64_t kv_row = Attn::at(doc.begin + kb, kvh, ldkv, D);
  pack_transposed(a.q + q_row, ldq, nr, D, a.scale, qt);
  pack_transposed(io.dout + q_row, ldq, nr, D, 1.0f, dout_t);
  std::fill(lse, lse + kRows, kInf);
  std::fill(drow, drow + kRows, 0.0f);
  std::copy_n(io.lse + h * a.T + doc.begin + qb, nr, lse);
  std::copy_n(io.drow + h * a.T + doc.begin + qb, nr, drow);

  tile_scores(a, a.k + Attn::at(doc.begin, kvh, ldkv, D), kb, nc, qb, qt, pt);
  scores_tile<kRows>(a.v + kv_row, ldkv, nc, dout_t, D, dst);  // dP^T = V dO^T
  for (std::int64_t c = 0; c < nc; ++c)
    for (int v = 0; v < kRows; v += kLanes) {
      float* p = pt + c * kRows + v;
      float* ds = dst + c * kRows + v;
      const V16 prob = vexp(load(p) - load(lse + v));
      store(p, prob);
      store(ds, prob * (load(ds) - load(drow + v)) * a.scale);
    }
  accumulate_rows(pt, kRows, 1, nc, nr, io.dout + q_row, ldq, io.dv + kv_row, ldkv, D);   // dV += P^T dO
  accumulate_rows(dst, kRows, 1, nc, nr, a.q + q_row, ldq, io.dk + kv_row, ldkv, D);      // dK += dS^T Q
  accumulate_rows(dst, 1, kRows, nr, nc, a.k + kv_row, ldkv, io.dq + q_row, ldq, D);      // dQ += dS K
}

// Backward of one document and one kv head: owns dk, dv of that head and dq of its query
// group over the document, so no two tasks write the same element.
LLMLAB_ATTN_CLONES void flash_backward_task(const Attn& a, const BackwardIo& io, Doc doc, std::int64_t kvh) {
  const std::int64_t D = a.D, h0 = kvh * a.group;
  for (std::int64_t t = doc.begin; t < doc.begin + doc.len; ++t) {
    std::fill_n(io.dk + Attn::at(t, kvh, a.ldkv(), D), D, 0.0f);
    std::fill_n(io.dv + Attn::at(t, kvh, a.ldkv(), D), D, 0.0f);
    for (std::int64_t h = h0; h < h0 + a.group; ++h) {
      const std::int64_t row = Attn::at(t, h, a.ldq(), D);
      std::fill_n(io.dq + row, D, 0.0f);
      io.drow[h * a.T + t] = dot(io.dout + row, io.out + row, D);
    }
  }
  float* tiles = thread_tiles(static_cast<std::size_t>((2 * D + 2 * kKeys) * kRows + 2 * kRows));
  for (std::int64_t kb = 0; kb < doc.len; kb += kKeys) {
    const std::int64_t nc = std::min(kKeys, doc.len - kb);
    const std::int64_t q_first = a.causal ? kb / kRows * kRows : 0;  // tiles above the diagonal skipped
    for (std::int64_t h = h0; h < h0 + a.group; ++h)
      for (std::int64_t qb = q_first; qb < doc.len; qb += kRows) flash_backward_pair(a, io, doc, h, kb, nc, qb, tiles);
  }
}

void flash_backward(const Attn& a, const BackwardIo& io, const std::int32_t* cu, std::int64_t docs, int threads) {
#pragma omp parallel num_threads(threads)
  for (std::int64_t i = 0; i < docs; ++i) {
#pragma omp for schedule(dynamic) nowait
    for (std::int64_t kvh = 0; kvh < a.Hkv; ++kvh) flash_backward_task(a, io, doc_at(cu, i), kvh);
  }
}

// ---- naive ---------------------------------------------------------------------------------

// Forward of one document and head: probs [len, len] row-major, zero above the diagonal
// when causal.
LLMLAB_ATTN_CLONES void naive_forward_task(const Attn& a, Doc doc, std::int64_t h, float* probs, float* out,
                                           float* lse) {
  const std::int64_t D = a.D, ldq = a.ldq(), ldkv = a.ldkv(), kvh = h / a.group;
  for (std::int64_t r = 0; r < doc.len; ++r) {
    const std::int64_t t = doc.begin + r, visible = a.causal ? r + 1 : doc.len;
    const float* qr = a.q + Attn::at(t, h, ldq, D);
    float* p = probs + r * doc.len;  // [len]
    float max = -kInf;
    for (std::int64_t c = 0; c < visible; ++c) {
      p[c] = a.scale * dot(qr, a.k + Attn::at(doc.begin + c, kvh, ldkv, D), D);
      max = std::max(max, p[c]);
    }
    exp_shifted(p, visible, max);
    float sum = 0;
    for (std::int64_t c = 0; c < visible; ++c) sum += p[c];
    const float inv = 1.0f / sum;
    for (std::int64_t c = 0; c < visible; ++c) p[c] *= inv;
    std::fill(p + visible, p + doc.len, 0.0f);
    if (lse) lse[h * a.T + t] = max + std::log(sum);  // optional: naive backward reads probs
    float* o = out + Attn::at(t, h, ldq, D);
    std::fill_n(o, D, 0.0f);
    for (std::int64_t c = 0; c < visible; ++c) axpy(o, p[c], a.v + Attn::at(doc.begin + c, kvh, ldkv, D), D);
  }
}

void naive_forward(const Attn& a, const std::int32_t* cu, std::int64_t docs, int threads, float* probs, float* out,
                   float* lse) {
#pragma omp parallel num_threads(threads)
  {
    std::int64_t offset = 0;  // of document i's probabilities: Hq * sum of earlier len^2
    for (std::int64_t i = 0; i < docs; ++i) {
      const Doc doc = doc_at(cu, i);
#pragma omp for schedule(dynamic) nowait
      for (std::int64_t h = 0; h < a.Hq; ++h)
        naive_forward_task(a, doc, h, probs + offset + h * doc.len * doc.len, out, lse);
      offset += a.Hq * doc.len * doc.len;
    }
  }
}

// Backward of one document and kv head (it owns dk, dv of the head and dq of its group), from
// the saved probabilities; dP goes to `scratch`, laid out like probs, then becomes dS.
LLMLAB_ATTN_CLONES void naive_backward_task(const Attn& a, const BackwardIo& io, Doc doc, std::int64_t kvh,
                                            const float* probs, float* scratch) {
  const std::int64_t D = a.D, ldq = a.ldq(), ldkv = a.ldkv(), area = doc.len * doc.len;
  for (std::int64_t t = doc.begin; t < doc.begin + doc.len; ++t) {
    std::fill_n(io.dk + Attn::at(t, kvh, ldkv, D), D, 0.0f);
    std::fill_n(io.dv + Attn::at(t, kvh, ldkv, D), D, 0.0f);
  }
  for (std::int64_t h = kvh * a.group; h < (kvh + 1) * a.group; ++h)
    for (std::int64_t r = 0; r < doc.len; ++r) {
      const std::int64_t t = doc.begin + r, visible = a.causal ? r + 1 : doc.len, row = Attn::at(t, h, ldq, D);
      const float* p = probs + h * area + r * doc.len;  // [len]
      float* ds = scratch + h * area + r * doc.len;     // [len] dP, then dS
      float drow = 0;                                   // sum_c P dP = rowsum(dO * O)
      for (std::int64_t c = 0; c < visible; ++c) {
        ds[c] = dot(io.dout + row, a.v + Attn::at(doc.begin + c, kvh, ldkv, D), D);
        drow += p[c] * ds[c];
      }
      float* dq = io.dq + row;
      std::fill_n(dq, D, 0.0f);
      for (std::int64_t c = 0; c < visible; ++c) {
        ds[c] = p[c] * (ds[c] - drow) * a.scale;
        const std::int64_t kv_row = Attn::at(doc.begin + c, kvh, ldkv, D);
        axpy(dq, ds[c], a.k + kv_row, D);
        axpy(io.dk + kv_row, ds[c], a.q + row, D);
        axpy(io.dv + kv_row, p[c], io.dout + row, D);
      }
      std::fill(ds + visible, ds + doc.len, 0.0f);
    }
}

void naive_backward(const Attn& a, const BackwardIo& io, const std::int32_t* cu, std::int64_t docs, int threads,
                    const float* probs, float* scratch) {
#pragma omp parallel num_threads(threads)
  {
    std::int64_t offset = 0;  // as in naive_forward
    for (std::int64_t i = 0; i < docs; ++i) {
      const Doc doc = doc_at(cu, i);
#pragma omp for schedule(dynamic) nowait
      for (std::int64_t kvh = 0; kvh < a.Hkv; ++kvh)
        naive_backward_task(a, io, doc, kvh, probs + offset, scratch + offset);
      offset += a.Hq * doc.len * doc.len;
    }
  }
}

}  // namespace

std::int64_t naive_attention_probs_elements(const std::int32_t* cu_seqlens_host, std::int64_t docs,
                                            std::int64_t heads) {
  std::int64_t squares = 0;
  for (std::int64_t i = 0; i < docs; ++i) {
    const std::int64_t len = cu_seqlens_host[i + 1] - cu_seqlens_host[i];
    squares += len * len;
  }
  return heads * squares;
}

void CpuBackend::attention_forward(AttentionImpl impl, const AttentionShape& s, const std::int32_t* /*cu_seqlens*/,
                                   const std::int32_t* cu_seqlens_host, const float* q, const float* k,
                                   const float* v, float* out, float* lse, float* probs) {
  const Attn a = make_attn(s, cu_seqlens_host, q, k, v);
  const int threads = team(threads_);
  if (impl == AttentionImpl::flash) {
    flash_forward(a, cu_seqlens_host, s.docs, threads, out, lse);
  } else {
    naive_forward(a, cu_seqlens_host, s.docs, threads, probs, out, lse);
  }
  // Tokens outside every document (padding): out and lse 0.
  zero_outside_docs(out, cu_seqlens_host, s.docs, s.tokens, a.ldq());
  for (std::int64_t h = 0; lse && h < s.heads; ++h) zero_outside_docs(lse + h * s.tokens, cu_seqlens_host, s.docs, s.tokens, 1);
}

void CpuBackend::attention_backward(AttentionImpl impl, const AttentionShape& s, const std::int32_t* /*cu_seqlens*/,
                                    const std::int32_t* cu_seqlens_host, const float* q, const float* k,
                                    const float* v, const float* out, const float* lse, const float* probs,
                                    const float* dout, float* dq, float* dk, float* dv, float* scratch) {
  const Attn a = make_attn(s, cu_seqlens_host, q, k, v);
  const int threads = team(threads_);
  const BackwardIo io{out, lse, dout, dq, dk, dv, scratch};
  if (impl == AttentionImpl::flash) {
    flash_backward(a, io, cu_seqlens_host, s.docs, threads);
  } else {
    naive_backward(a, io, cu_seqlens_host, s.docs, threads, probs, scratch);
  }
  zero_outside_docs(dq, cu_seqlens_host, s.docs, s.tokens, a.ldq());
  zero_outside_docs(dk, cu_seqlens_host, s.docs, s.tokens, a.ldkv());
  zero_outside_docs(dv, cu_seqlens_host, s.docs, s.tokens, a.ldkv());
}

}  // namespace llmlab
