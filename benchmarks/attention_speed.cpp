// CPU attention speed: flash vs naive, forward and backward, median of repeats, in GFLOP/s by
// FlashAttention's convention (forward 4 s^2 D Hq per document, halved when causal; backward
// 2.5x forward), so numbers compare with PyTorch's and FlashAttention's benchmarks.
// Run: build/dev/bin/attention-speed [threads (0: all)] [repeats] [flash|naive|both]
#include <fmt/format.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/timing.hpp"
#include "core/random.hpp"
#include "ops/cpu/cpu_backend.hpp"

using namespace llmlab;

namespace {

struct Case {
  std::string name;
  std::vector<std::int32_t> lens;  // documents packed back to back
  std::int64_t Hq, Hkv, D;
  bool causal;
};

std::vector<float> uniform(std::size_t n, std::uint64_t& state) {
  std::vector<float> x(n);
  for (float& e : x) e = static_cast<float>(static_cast<double>(splitmix64(state) >> 11) * 0x1p-52 - 1.0);
  return x;
}

double forward_flops(const Case& c) {
  double flops = 0;
  for (std::int32_t len : c.lens) flops += 4.0 * len * len * static_cast<double>(c.D * c.Hq);
  return c.causal ? flops / 2 : flops;
}

void run(CpuBackend& cpu, const Case& c, int repeats, const std::string& which) {
  std::vector<std::int32_t> cu = {0};
  for (std::int32_t len : c.lens) cu.push_back(cu.back() + len);
  AttentionShape s;
  s.tokens = cu.back();
  s.docs = static_cast<std::int64_t>(c.lens.size());
  for (std::int32_t len : c.lens) s.max_seqlen = std::max<std::int64_t>(s.max_seqlen, len);
  s.heads = c.Hq;
  s.kv_heads = c.Hkv;
  s.head_dim = c.D;
  s.causal = c.causal;
  s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.D)));
  const auto q_size = static_cast<std::size_t>(s.tokens * c.Hq * c.D);
  const auto kv_size = static_cast<std::size_t>(s.tokens * c.Hkv * c.D);
  std::uint64_t seed = 1;
  const std::vector<float> q = uniform(q_size, seed), k = uniform(kv_size, seed), v = uniform(kv_size, seed),
                           dout = uniform(q_size, seed);
  std::vector<float> out(q_size), lse(static_cast<std::size_t>(c.Hq * s.tokens)), dq(q_size), dk(kv_size),
      dv(kv_size);
  std::vector<float> probs(static_cast<std::size_t>(naive_attention_probs_elements(cu.data(), s.docs, c.Hq)));
  std::vector<float> scratch(std::max(probs.size(), lse.size()));

  const double fwd = forward_flops(c);
  for (AttentionImpl impl : {AttentionImpl::flash, AttentionImpl::naive}) {
    const char* name = impl == AttentionImpl::flash ? "flash" : "naive";
    if (which != "both" && which != name) continue;
    const Timing f = measure(
        [&] {
          cpu.attention_forward(impl, s, cu.data(), cu.data(), q.data(), k.data(), v.data(), out.data(), lse.data(),
                                probs.data());
        },
        1, repeats);
    const Timing b = measure(
        [&] {
          cpu.attention_backward(impl, s, cu.data(), cu.data(), q.data(), k.data(), v.data(), out.data(), lse.data(),
                                 probs.data(), dout.data(), dq.data(), dk.data(), dv.data(), scratch.data());
        },
        1, repeats);
    fmt::print("{:<44} {:<6} {:>9.2f} ms {:>7.1f} GFLOP/s {:>9.2f} ms {:>7.1f} GFLOP/s\n", c.name,
               name, f.median_s * 1e3, fwd / f.median_s * 1e-9,
               b.median_s * 1e3, 2.5 * fwd / b.median_s * 1e-9);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 9;
  const std::string which = argc > 3 ? argv[3] : "both";
  CpuBackend cpu(threads);
  const std::vector<Case> cases = {
      {"T=1024 1 doc Hq=12 D=64 causal", {1024}, 12, 12, 64, true},
      {"T=1024 1 doc Hq=12 D=64 non-causal", {1024}, 12, 12, 64, false},
      {"T=1024 docs 512+256+128+64x2 Hq=12 D=64 causal", {512, 256, 128, 64, 64}, 12, 12, 64, true},
      {"T=2048 1 doc Hq=16 Hkv=4 D=64 causal", {2048}, 16, 4, 64, true},
      {"T=1024 1 doc Hq=8 Hkv=2 D=128 causal", {1024}, 8, 2, 128, true},
  };
  fmt::print("{} threads; forward 4 s^2 D Hq (causal /2), backward 2.5x forward\n", threads > 0 ? threads : omp_get_max_threads());
  fmt::print("{:<44} {:<6} {:>12} {:>15} {:>12} {:>15}\n", "shape", "impl", "fwd", "fwd", "bwd", "bwd");
  for (const Case& c : cases) run(cpu, c, repeats, which);
  return 0;
}
