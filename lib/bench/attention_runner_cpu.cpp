// bench-attn's CPU runner: the CPU backend's attention kernels (the ones train uses) in fp32.
#include <chrono>

#include "bench/attention_runner.hpp"
#include "ops/cpu/cpu_backend.hpp"

namespace llmlab {
namespace {

class CpuAttentionRunner final : public AttentionRunner {
 public:
  CpuAttentionRunner(AttentionImpl impl, int threads) : impl_(impl), cpu_(threads) {}

  std::uint64_t memory_bytes(BenchMode mode) const override {
    if (copies_.empty()) return 0;
    const std::uint64_t q = copies_[0].q.size(), kv = copies_[0].k.size();
    std::uint64_t floats = 2 * q + 2 * kv + lse_.size() + probs_.size();  // q, k, v, out, lse, probs
    if (mode != BenchMode::fwd) floats += 2 * q + 2 * kv + scratch_.size();  // dout, dq, dk, dv, scratch
    return floats * sizeof(float);
  }

 protected:
  void upload(const AttentionCase& c, const AttentionShape& s, const std::vector<AttentionInputs>& copies) override {
    cu_ = c.cu_seqlens;
    shape_ = s;
    copies_ = copies;
    const auto q_size = copies[0].q.size(), kv_size = copies[0].k.size();
    const auto stats = static_cast<std::size_t>(s.heads * s.tokens);
    out_.assign(q_size, 0.0f);
    lse_.assign(stats, 0.0f);
    dq_.assign(q_size, 0.0f);
    dk_.assign(kv_size, 0.0f);
    dv_.assign(kv_size, 0.0f);
    if (impl_ == AttentionImpl::naive) probs_.assign(static_cast<std::size_t>(c.prob_elements()), 0.0f);
    scratch_.assign(impl_ == AttentionImpl::naive ? probs_.size() : stats, 0.0f);  // dP, or rowsum(dO * O)
  }

  void forward(int copy) override {
    const AttentionInputs& in = copies_[static_cast<std::size_t>(copy)];
    cpu_.attention_forward(impl_, shape_, cu_.data(), cu_.data(), in.q.data(), in.k.data(), in.v.data(), out_.data(),
                           lse_.data(), probs_.empty() ? nullptr : probs_.data());
  }

  void backward() override {
    const AttentionInputs& in = copies_[0];
    cpu_.attention_backward(impl_, shape_, cu_.data(), cu_.data(), in.q.data(), in.k.data(), in.v.data(), out_.data(),
                            lse_.data(), probs_.empty() ? nullptr : probs_.data(), in.dout.data(), dq_.data(),
                            dk_.data(), dv_.data(), scratch_.data());
  }

  std::vector<double> timed(const std::function<void()>& pass, int warmup, int repeats) override {
    std::vector<double> seconds;
    for (int i = 0; i < warmup + repeats; ++i) {
      const auto start = std::chrono::steady_clock::now();
      pass();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (i >= warmup) seconds.push_back(s);
    }
    return seconds;
  }

  AttentionOutputs download() override { return {out_, dq_, dk_, dv_}; }

  void free_buffers() override {
    for (auto* v : {&out_, &lse_, &dq_, &dk_, &dv_, &probs_, &scratch_}) std::vector<float>().swap(*v);
    copies_.clear();
  }

 private:
  AttentionImpl impl_;
  CpuBackend cpu_;
  AttentionShape shape_;
  std::vector<std::int32_t> cu_;
  std::vector<AttentionInputs> copies_;
  std::vector<float> out_, lse_, dq_, dk_, dv_, probs_, scratch_;
};

}  // namespace

std::unique_ptr<AttentionRunner> make_cpu_attention_runner(AttentionImpl impl, int threads) {
  return std::make_unique<CpuAttentionRunner>(impl, threads);
}

}  // namespace llmlab
