// The device-independent sequencing of a runner: input copies, pass order, result freshness.
#include "bench/attention_runner.hpp"

#include <algorithm>
#include <cmath>

namespace llmlab {

AttentionShape attention_shape(const AttentionCase& c) {
  AttentionShape s;
  s.tokens = c.tokens();
  s.docs = c.docs();
  s.max_seqlen = c.max_doc_len();
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.causal = c.causal;
  s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  return s;
}

void AttentionRunner::load(const AttentionCase& c, const AttentionInputs& in, int copies) {
  release();
  std::vector<AttentionInputs> sets(1, in);
  for (int i = 1; i < copies; ++i) {
    AttentionInputs x = in;
    for (auto* t : {&x.q, &x.k, &x.v})
      if (!t->empty()) std::rotate(t->begin(), t->begin() + static_cast<std::ptrdiff_t>(i % t->size()), t->end());
    sets.push_back(std::move(x));
  }
  upload(c, attention_shape(c), sets);
  copies_ = std::max(1, copies);
}

std::vector<double> AttentionRunner::time(BenchMode mode, int warmup, int repeats) {
  if (mode == BenchMode::bwd && !forward_done_) {
    forward(0);
    forward_done_ = true;
  }
  int next = 0;
  const auto pass = [&] {
    if (mode != BenchMode::bwd) forward(mode == BenchMode::fwd ? next++ % copies_ : 0);
    if (mode != BenchMode::fwd) backward();
  };
  std::vector<double> seconds = timed(pass, warmup, repeats);
  // Forward-only passes may leave another copy's output (gradients are untouched); the
  // other modes end with copy 0's forward and backward.
  if (mode == BenchMode::fwd) forward_done_ = copies_ == 1;
  else forward_done_ = backward_done_ = true;
  return seconds;
}

AttentionOutputs AttentionRunner::results() {
  if (!forward_done_) {
    forward(0);
    forward_done_ = true;
    backward_done_ = false;
  }
  if (!backward_done_) {
    backward();
    backward_done_ = true;
  }
  return download();
}

void AttentionRunner::release() {
  free_buffers();
  copies_ = 0;
  forward_done_ = backward_done_ = false;
}

}  // namespace llmlab
