// GEMM throughput of the CPU backend at GPT-2 training shapes: every linear layer's forward,
// input-gradient and weight-gradient products for T tokens, in both weight layouts (nn.Linear
// W [out, in]; Hugging Face GPT-2 Conv1D W [in, out]). The best rate on large shapes is the
// machine's "sgemm ceiling" that train reports MFU against.
// Run: build/dev/bin/bench-sgemm [--json] [--threads N] [--tokens 256,1024,4096]
// (LLMLAB_CPU_GEMM=sgemm or =matmul forces one oneDNN API, to re-check the choice in gemm.cpp.)
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench/timing.hpp"
#include "ops/cpu/cpu_backend.hpp"

using namespace llmlab;

namespace {

struct Layer {
  const char* name;
  std::int64_t out, in;
};

// GPT-2 small (C = 768): fused qkv, attention projection, MLP up and down, tied LM head.
constexpr Layer kLayers[] = {{"qkv", 2304, 768},
                             {"attn_proj", 768, 768},
                             {"mlp_fc", 3072, 768},
                             {"mlp_proj", 768, 3072},
                             {"lm_head", 50257, 768}};

struct Case {
  std::string name;
  bool trans_a, trans_b;
  std::int64_t M, N, K;
  float beta;
};

// The three products of one layer for T tokens, in the given weight layout.
std::vector<Case> layer_cases(const Layer& l, std::int64_t T, bool conv1d) {
  const std::string p = fmt::format("T={} {} {}", T, l.name, conv1d ? "conv1d" : "linear");
  if (!conv1d)
    return {{p + " fwd   Y=X W^T", false, true, T, l.out, l.in, 0.0f},
            {p + " dgrad dX=dY W", false, false, T, l.in, l.out, 0.0f},
            {p + " wgrad dW+=dY^T X", true, false, l.out, l.in, T, 1.0f}};
  return {{p + " fwd   Y=X W", false, false, T, l.out, l.in, 0.0f},
          {p + " dgrad dX=dY W^T", false, true, T, l.in, l.out, 0.0f},
          {p + " wgrad dW+=X^T dY", true, false, l.in, l.out, T, 1.0f}};
}

// Shapes of at least 2 * 1024 * 768 * 768 flops count towards the ceiling: smaller ones are
// dominated by threading overhead and say nothing about the machine.
constexpr double kLargeFlops = 2.0 * 1024 * 768 * 768;

struct Options {
  bool json = false;
  int threads = 0;
  std::vector<std::int64_t> tokens = {256, 1024, 4096};
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      o.json = true;
    } else if (a == "--threads" && i + 1 < argc) {
      o.threads = std::stoi(argv[++i]);
    } else if (a == "--tokens" && i + 1 < argc) {
      o.tokens.clear();
      std::string list = argv[++i];
      for (std::size_t pos = 0; pos <= list.size();) {
        const std::size_t comma = std::min(list.find(',', pos), list.size());
        o.tokens.push_back(std::stoll(list.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else {
      throw std::runtime_error("usage: bench-sgemm [--json] [--threads N] [--tokens 256,1024,4096]");
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const Options opt = parse(argc, argv);
  CpuBackend be(opt.threads);
  std::vector<Case> cases;
  for (const std::int64_t T : opt.tokens)
    for (const Layer& l : kLayers)
      for (const bool conv1d : {false, true})
        for (const Case& c : layer_cases(l, T, conv1d)) cases.push_back(c);

  // One set of buffers sized for the largest operand; small values keep the sums finite.
  std::int64_t most = 0;
  for (const Case& c : cases) most = std::max({most, c.M * c.K, c.K * c.N, c.M * c.N});
  std::vector<float*> buf;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.01f, 0.01f);
  for (int i = 0; i < 3; ++i) {
    buf.push_back(static_cast<float*>(be.allocate(static_cast<std::size_t>(most) * sizeof(float))));
    for (std::int64_t j = 0; j < most; ++j) buf.back()[j] = dist(rng);
  }

  nlohmann::json rows = nlohmann::json::array();
  double ceiling = 0, ceiling_best = 0;
  if (!opt.json) fmt::print("{:<44} {:>6} {:>6} {:>6} {:>10} {:>9}\n", "shape (threads " + std::to_string(be.threads()) + ")", "M", "N", "K", "median ms", "GFLOP/s");
  for (const Case& c : cases) {
    const std::int64_t lda = c.trans_a ? c.M : c.K, ldb = c.trans_b ? c.K : c.N;
    auto run = [&] { be.gemm(c.trans_a, c.trans_b, c.M, c.N, c.K, 1.0f, buf[0], lda, buf[1], ldb, c.beta, buf[2], c.N); };
    const double flops = 2.0 * static_cast<double>(c.M) * static_cast<double>(c.N) * static_cast<double>(c.K);
    // About 0.5 s of repeats per shape at ~100 GFLOP/s, at least 3 and at most 25.
    const int repeats = std::clamp(static_cast<int>(5e10 / flops), 3, 25);
    const Timing t = measure(run, 1, repeats);
    const double gflops = flops / t.median_s / 1e9;
    if (flops >= kLargeFlops) {
      ceiling = std::max(ceiling, gflops);
      ceiling_best = std::max(ceiling_best, flops / t.min_s / 1e9);
    }
    rows.push_back({{"name", c.name}, {"M", c.M}, {"N", c.N}, {"K", c.K}, {"trans_a", c.trans_a}, {"trans_b", c.trans_b},
                    {"beta", c.beta}, {"median_ms", t.median_s * 1e3}, {"min_ms", t.min_s * 1e3}, {"gflops", gflops}});
    if (!opt.json) fmt::print("{:<44} {:>6} {:>6} {:>6} {:>10.3f} {:>9.1f}\n", c.name, c.M, c.N, c.K, t.median_s * 1e3, gflops);
  }
  for (float* p : buf) be.release(p);
  if (opt.json) {
    const char* api = std::getenv("LLMLAB_CPU_GEMM");  // see ops/cpu/gemm.cpp
    std::cout << nlohmann::json{{"backend", be.name()},
                                {"threads", be.threads()},
                                {"gemm_api", api != nullptr ? api : "auto"},
                                {"ceiling_gflops", ceiling},
                                // From the fastest repeat: what the cores do when nothing else
                                // runs (medians drop on a shared machine).
                                {"ceiling_best_gflops", ceiling_best},
                                {"shapes", rows}}
                     .dump(2)
              << "\n";
  } else {
    fmt::print("ceiling (best large-shape median rate): {:.1f} GFLOP/s; from fastest repeats: {:.1f} GFLOP/s\n",
               ceiling, ceiling_best);
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench-sgemm: " << e.what() << "\n";
  return 1;
}
