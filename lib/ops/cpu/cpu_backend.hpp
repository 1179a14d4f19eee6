// The CPU backend: fp32, GEMMs through oneDNN, everything else OpenMP loops over plain
// arrays. Its ops are defined across ops/cpu/*.cpp, one file per family (gemm, norms,
// pointwise, loss, attention, optimizer), each tested against a float64 reference.
#pragma once

#include <memory>

#include "ops/backend.hpp"

namespace llmlab {

class CpuBackend final : public Backend {
 public:
  // threads <= 0: all cores (OpenMP's default).
  explicit CpuBackend(int threads = 0);
  const char* name() const override { return "cpu"; }
  int threads() const { return threads_; }

  void* allocate(std::size_t bytes) override;
  void release(void* p) override;
  void copy_from_host(void* dst, const void* src, std::size_t bytes) override;
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override;
  void copy(float* dst, const float* src, std::int64_t n) override;
  void zero(float* x, std::int64_t n) override;

  void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const float* A,
            std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc) override;
  void bias_forward(float* y, const float* bias, std::int64_t T, std::int64_t N, std::int64_t ld) override;
  void bias_backward(const float* dy, float* dbias, std::int64_t T, std::int64_t N, std::int64_t ld) override;

  void layernorm_forward(const float* x, const float* w, const float* b, float* out, float* mean_rstd,
                         std::int64_t T, std::int64_t C, float eps) override;
  void layernorm_apply(const float* x, const float* w, const float* b, const float* mean_rstd, float* out,
                       std::int64_t T, std::int64_t C) override;
  void layernorm_backward(const float* dout, const float* x, const float* w, const float* mean_rstd, float* dx,
                          float* dw, float* db, std::int64_t T, std::int64_t C) override;
  void rmsnorm_forward(const float* x, const float* w, float* out, float* rstd, std::int64_t T, std::int64_t C,
                       float eps) override;
  void rmsnorm_apply(const float* x, const float* w, const float* rstd, float* out, std::int64_t T,
                     std::int64_t C) override;
  void rmsnorm_backward(const float* dout, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                        std::int64_t T, std::int64_t C) override;

  void rope_forward(float* x, const std::int32_t* pos, std::int64_t T, std::int64_t H, std::int64_t D,
                    float theta) override;
  void rope_backward(float* dx, const std::int32_t* pos, std::int64_t T, std::int64_t H, std::int64_t D,
                     float theta) override;
  void gelu_forward(const float* x, float* out, std::int64_t n) override;
  void gelu_backward(const float* dout, const float* x, float* dx, std::int64_t n) override;
  void swiglu_forward(const float* gate, const float* up, float* out, std::int64_t n) override;
  void swiglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup,
                       std::int64_t n) override;
  void embedding_forward(const std::int32_t* ids, const std::int32_t* pos, const float* wte, const float* wpe,
                         float* out, std::int64_t T, std::int64_t C) override;
  void embedding_backward(const float* dout, const std::int32_t* ids, const std::int32_t* pos, float* dwte,
                          float* dwpe, std::int64_t T, std::int64_t C) override;

  double cross_entropy(float* logits, const std::int32_t* targets, const std::uint8_t* mask, float* losses,
                       float* lse, std::int64_t T, std::int64_t V, float grad_scale) override;
  void cross_entropy_backward(float* logits, const std::int32_t* targets, const float* dloss, std::int64_t T,
                              std::int64_t V) override;

  void attention_forward(AttentionImpl impl, const AttentionShape& s, const std::int32_t* cu_seqlens,
                         const std::int32_t* cu_seqlens_host, const float* q, const float* k, const float* v,
                         float* out, float* lse, float* probs) override;
  void attention_backward(AttentionImpl impl, const AttentionShape& s, const std::int32_t* cu_seqlens,
                          const std::int32_t* cu_seqlens_host, const float* q, const float* k, const float* v,
                          const float* out, const float* lse, const float* probs, const float* dout, float* dq,
                          float* dk, float* dv, float* scratch) override;
  void attention_decode(const DecodeAttentionShape& s, const float* q, const float* k_cache, const float* v_cache,
                        const std::int32_t* seq, const std::int32_t* lengths, float* out) override;

  double sum_squares(const float* x, std::int64_t n) override;
  void scale(float* x, std::int64_t n, float alpha) override;
  void adamw(float* p, const float* g, float* m, float* v, std::int64_t n, float lr, float beta1, float beta2,
             float eps, float weight_decay, std::int64_t step) override;

 private:
  int threads_;
};

}  // namespace llmlab
