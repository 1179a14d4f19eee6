// A linear layer over the backend's GEMM, for both weight layouts the Hugging Face models
// use: nn.Linear ([out, in], y = x W^T: Llama) and GPT-2's Conv1D ([in, out], y = x W), the
// latter possibly a column slice of a fused matrix (c_attn holds q, k and v side by side).
#pragma once

#include <cstdint>

#include "ops/backend.hpp"

namespace llmlab {

struct Linear {
  const float* w = nullptr;
  float* dw = nullptr;
  const float* b = nullptr;  // optional bias [out]
  float* db = nullptr;
  std::int64_t in = 0, out = 0;
  bool in_major = false;  // Conv1D layout: w is [in, ld], this layer's columns first
  std::int64_t ld = 0;    // row stride of w: `in` for nn.Linear, the fused width for Conv1D

  static Linear dense(const float* w, float* dw, const float* b, float* db, std::int64_t in, std::int64_t out) {
    return {w, dw, b, db, in, out, false, in};
  }
  static Linear conv1d(const float* w, float* dw, const float* b, float* db, std::int64_t in, std::int64_t out,
                       std::int64_t ld) {
    return {w, dw, b, db, in, out, true, ld};
  }
};

// y [T, out] = x [T, in] W (+ b); beta = 1 adds to y instead (a residual connection).
inline void linear_forward(Backend& be, const Linear& l, const float* x, float* y, std::int64_t T, float beta = 0) {
  if (l.in_major)
    be.gemm(false, false, T, l.out, l.in, 1.0f, x, l.in, l.w, l.ld, beta, y, l.out);
  else
    be.gemm(false, true, T, l.out, l.in, 1.0f, x, l.in, l.w, l.ld, beta, y, l.out);
  if (l.b) be.bias_forward(y, l.b, T, l.out, l.out);
}

// dx [T, in] = dy W^T (beta = 1 accumulates; dx may be null); dW += x^T dy; db += sum dy.
inline void linear_backward(Backend& be, const Linear& l, const float* x, const float* dy, float* dx, float dx_beta,
                            std::int64_t T) {
  if (dx) {
    if (l.in_major)
      be.gemm(false, true, T, l.in, l.out, 1.0f, dy, l.out, l.w, l.ld, dx_beta, dx, l.in);
    else
      be.gemm(false, false, T, l.in, l.out, 1.0f, dy, l.out, l.w, l.ld, dx_beta, dx, l.in);
  }
  if (l.in_major)
    be.gemm(true, false, l.in, l.out, T, 1.0f, x, l.in, dy, l.out, 1.0f, l.dw, l.ld);
  else
    be.gemm(true, false, l.out, l.in, T, 1.0f, dy, l.out, x, l.in, 1.0f, l.dw, l.ld);
  if (l.db) be.bias_backward(dy, l.db, T, l.out, l.out);
}

}  // namespace llmlab
