// bench-attn's CPU runner: the CPU backend's attention kernels (the ones train uses) in fp32.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "bench/attention_runner.hpp"
#include "core/error.hpp"
#include "ops/cpu/cpu_backend.hpp"

namespace llmlab {
namespace {

class CpuAttentionRunner final : public AttentionRunner {
 public:
  CpuAttentionRunner(AttentionImpl impl, int threads) : impl_(impl), cpu_(threads) {}

  void load(const AttentionCase& c, const AttentionInputs& in, int copies) override {
    release();
    c_ = c;
    shape_.tokens = c.tokens();
    shape_.docs = c.docs();
    shape_.max_seqlen = c.max_doc_len();
    shape_.heads = c.heads;
    shape_.kv_heads = c.kv_heads;
    shape_.head_dim = c.head_dim;
    shape_.causal = c.causal;
    shape_.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
    copies_.assign(1, in);
    // Later copies: the same values rotated by one element, so each is distinct memory
    // holding numerically similar data.
    for (int i = 1; i < copies; ++i) {
      AttentionInputs x = in;
      for (auto* t : {&x.q, &x.k, &x.v}) std::rotate(t->begin(), t->begin() + 1, t->end());
      copies_.push_back(std::move(x));
    }
    const auto q_size = in.q.size(), kv_size = in.k.size();
    const auto stats = static_cast<std::size_t>(c.heads * c.tokens());
    out_.assign(q_size, 0.0f);
    lse_.assign(stats, 0.0f);
    dq_.assign(q_size, 0.0f);
    dk_.assign(kv_size, 0.0f);
    dv_.assign(kv_size, 0.0f);
    if (impl_ == AttentionImpl::naive) {
      probs_.assign(static_cast<std::size_t>(c.prob_elements()), 0.0f);
      scratch_.assign(probs_.size(), 0.0f);
    } else {
      scratch_.assign(stats, 0.0f);
    }
    forward_done_ = backward_done_ = false;
  }

  std::vector<double> time(BenchMode mode, int warmup, int repeats) override {
    if (mode == BenchMode::bwd && !forward_done_) forward(0);
    std::vector<double> seconds;
    int next = 0;
    for (int i = 0; i < warmup + repeats; ++i) {
      // Forward passes rotate through the input copies; a backward reads copy 0's saved tensors.
      const int copy = mode == BenchMode::fwd ? next++ % static_cast<int>(copies_.size()) : 0;
      const auto start = std::chrono::steady_clock::now();
      if (mode != BenchMode::bwd) forward(copy);
      if (mode != BenchMode::fwd) backward();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (i >= warmup) seconds.push_back(s);
    }
    if (mode == BenchMode::fwd && copies_.size() > 1) forward_done_ = false;  // out may hold another copy's
    return seconds;
  }

  AttentionOutputs results() override {
    if (!forward_done_) forward(0);
    if (!backward_done_) backward();
    return {out_, dq_, dk_, dv_};
  }

  std::uint64_t memory_bytes(BenchMode mode) const override {
    const std::uint64_t q = copies_.empty() ? 0 : copies_[0].q.size(), kv = copies_.empty() ? 0 : copies_[0].k.size();
    std::uint64_t floats = 2 * q + 2 * kv + lse_.size() + probs_.size();  // q, k, v, out, lse, probs
    if (mode != BenchMode::fwd) floats += 2 * q + 2 * kv + scratch_.size();  // dout, dq, dk, dv, scratch
    return floats * sizeof(float);
  }

  void release() override {
    for (auto* v : {&out_, &lse_, &dq_, &dk_, &dv_, &probs_, &scratch_}) std::vector<float>().swap(*v);
    copies_.clear();
    forward_done_ = backward_done_ = false;
  }

 private:
  void forward(int copy) {
    const AttentionInputs& in = copies_[static_cast<std::size_t>(copy)];
    const std::int32_t* cu = c_.cu_seqlens.data();
    cpu_.attention_forward(impl_, shape_, cu, cu, in.q.data(), in.k.data(), in.v.data(), out_.data(), lse_.data(),
                           probs_.empty() ? nullptr : probs_.data());
    forward_done_ = copy == 0;
  }
  void backward() {
    const AttentionInputs& in = copies_[0];
    const std::int32_t* cu = c_.cu_seqlens.data();
    cpu_.attention_backward(impl_, shape_, cu, cu, in.q.data(), in.k.data(), in.v.data(), out_.data(), lse_.data(),
                            probs_.empty() ? nullptr : probs_.data(), in.dout.data(), dq_.data(), dk_.data(),
                            dv_.data(), scratch_.data());
    backward_done_ = true;
  }

  AttentionImpl impl_;
  CpuBackend cpu_;
  AttentionCase c_;
  AttentionShape shape_;
  std::vector<AttentionInputs> copies_;
  std::vector<float> out_, lse_, dq_, dk_, dv_, probs_, scratch_;
  bool forward_done_ = false, backward_done_ = false;
};

}  // namespace

std::unique_ptr<AttentionRunner> make_cpu_attention_runner(AttentionImpl impl, int threads) {
  return std::make_unique<CpuAttentionRunner>(impl, threads);
}

}  // namespace llmlab
