// CPU attention (flash and naive) against a float64 reference written here: forward out, lse
// and probabilities, gradients, finite differences, document isolation, padding, determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/random.hpp"
#include "ops/cpu/cpu_backend.hpp"

using namespace llmlab;

namespace {

// Tolerances, relative to max(1, max |reference|): fp32 kernels against float64.
constexpr double kForwardTol = 5e-6;  // out (a convex mix of v in [-1, 1]) and lse; seen: 1e-6
constexpr double kGradTol = 2e-5;    // dq, dk, dv (sums over up to 130 keys and 4 heads); seen: 3e-6

// A packed batch: documents of the given lengths, then `padding` tokens outside every document.
struct Problem {
  AttentionShape s;
  std::vector<std::int32_t> cu;
  std::vector<float> q, k, v, dout;  // [T, Hq, D], [T, Hkv, D] x2, [T, Hq, D]
};

std::vector<float> uniform(std::size_t n, std::uint64_t& state) {
  std::vector<float> x(n);
  for (float& e : x) e = static_cast<float>(static_cast<double>(splitmix64(state) >> 11) * 0x1p-52 - 1.0);
  return x;
}

Problem make_problem(const std::vector<std::int32_t>& lens, std::int64_t Hq, std::int64_t Hkv, std::int64_t D,
                     bool causal, std::uint64_t seed, std::int32_t padding = 0) {
  Problem p;
  p.cu = {0};
  for (std::int32_t len : lens) p.cu.push_back(p.cu.back() + len);
  const std::int64_t T = p.cu.back() + padding;
  p.s.tokens = T;
  p.s.docs = static_cast<std::int64_t>(lens.size());
  p.s.max_seqlen = *std::max_element(lens.begin(), lens.end());
  p.s.heads = Hq;
  p.s.kv_heads = Hkv;
  p.s.head_dim = D;
  p.s.causal = causal;
  p.s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  p.q = uniform(static_cast<std::size_t>(T * Hq * D), seed);
  p.k = uniform(static_cast<std::size_t>(T * Hkv * D), seed);
  p.v = uniform(static_cast<std::size_t>(T * Hkv * D), seed);
  p.dout = uniform(static_cast<std::size_t>(T * Hq * D), seed);
  return p;
}

struct Forward {
  std::vector<float> out, lse, probs;
};
struct Grads {
  std::vector<float> dq, dk, dv;
};

Forward run_forward(CpuBackend& cpu, AttentionImpl impl, const Problem& p) {
  const auto& s = p.s;
  Forward f{std::vector<float>(p.q.size(), -7.0f), std::vector<float>(static_cast<std::size_t>(s.heads * s.tokens), -7.0f),
            std::vector<float>(static_cast<std::size_t>(naive_attention_probs_elements(p.cu.data(), s.docs, s.heads)))};
  cpu.attention_forward(impl, s, p.cu.data(), p.cu.data(), p.q.data(), p.k.data(), p.v.data(), f.out.data(),
                        f.lse.data(), f.probs.data());
  return f;
}

// Gradients from a fresh forward; outputs start as garbage to check they are overwritten.
Grads run_backward(CpuBackend& cpu, AttentionImpl impl, const Problem& p) {
  const Forward f = run_forward(cpu, impl, p);
  Grads g{std::vector<float>(p.q.size(), 9.0f), std::vector<float>(p.k.size(), 9.0f),
          std::vector<float>(p.v.size(), 9.0f)};
  const std::size_t scratch = impl == AttentionImpl::flash ? f.lse.size() : f.probs.size();
  std::vector<float> work(scratch, 5.0f);
  cpu.attention_backward(impl, p.s, p.cu.data(), p.cu.data(), p.q.data(), p.k.data(), p.v.data(), f.out.data(),
                         f.lse.data(), f.probs.data(), p.dout.data(), g.dq.data(), g.dk.data(), g.dv.data(),
                         work.data());
  return g;
}

// ---- float64 reference ------------------------------------------------------------------------

struct Ref {
  std::vector<double> q, k, v, dout;
  explicit Ref(const Problem& p) : q(p.q.begin(), p.q.end()), k(p.k.begin(), p.k.end()), v(p.v.begin(), p.v.end()),
                          dout(p.dout.begin(), p.dout.end()) {}
};
struct RefForward {
  std::vector<double> out, lse, probs;  // probs in the naive kernel's layout
};
struct RefGrads {
  std::vector<double> dq, dk, dv;
};

// Calls fn(doc, t, h, kvh, r, begin, probs, lse) for query row r (token t) of each document
// starting at token `begin`, with the row's softmax probabilities over its visible keys
// [begin, begin + probs.size()) and its log-sum-exp.
template <class Fn>
void for_each_row(const Problem& p, const Ref& x, Fn fn) {
  const auto& s = p.s;
  const std::int64_t D = s.head_dim, group = s.heads / s.kv_heads;
  std::vector<double> probs;
  for (std::int64_t i = 0; i < s.docs; ++i) {
    const std::int64_t begin = p.cu[i], len = p.cu[i + 1] - p.cu[i];
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::int64_t r = 0; r < len; ++r) {
        const std::int64_t t = begin + r, kvh = h / group, visible = s.causal ? r + 1 : len;
        probs.assign(static_cast<std::size_t>(visible), 0.0);
        double max = -INFINITY;
        for (std::int64_t c = 0; c < visible; ++c) {
          double dot = 0;
          for (std::int64_t d = 0; d < D; ++d)
            dot += x.q[(t * s.heads + h) * D + d] * x.k[((begin + c) * s.kv_heads + kvh) * D + d];
          probs[c] = dot * s.scale;
          max = std::max(max, probs[c]);
        }
        double sum = 0;
        for (double& e : probs) sum += (e = std::exp(e - max));
        for (double& e : probs) e /= sum;
        fn(i, t, h, kvh, r, begin, probs, max + std::log(sum));
      }
  }
}

RefForward reference_forward(const Problem& p, const Ref& x) {
  const auto& s = p.s;
  const std::int64_t D = s.head_dim;
  RefForward f{std::vector<double>(p.q.size(), 0.0), std::vector<double>(static_cast<std::size_t>(s.heads * s.tokens), 0.0),
               std::vector<double>(static_cast<std::size_t>(naive_attention_probs_elements(p.cu.data(), s.docs, s.heads)), 0.0)};
  for_each_row(p, x, [&](std::int64_t i, std::int64_t t, std::int64_t h, std::int64_t kvh, std::int64_t r,
                         std::int64_t begin, const std::vector<double>& probs, double lse) {
    const std::int64_t len = p.cu[i + 1] - p.cu[i];
    const std::int64_t offset = naive_attention_probs_elements(p.cu.data(), i, s.heads);  // of document i
    f.lse[h * s.tokens + t] = lse;
    for (std::size_t c = 0; c < probs.size(); ++c) {
      f.probs[offset + (h * len + r) * len + c] = probs[c];
      for (std::int64_t d = 0; d < D; ++d)
        f.out[(t * s.heads + h) * D + d] += probs[c] * x.v[((begin + c) * s.kv_heads + kvh) * D + d];
    }
  });
  return f;
}

// Analytic backward: dP = dO V^T, dS = P (dP - rowsum(P dP)), dQ = scale dS K, dK = scale dS^T Q,
// dV = P^T dO.
RefGrads reference_backward(const Problem& p, const Ref& x) {
  const auto& s = p.s;
  const std::int64_t D = s.head_dim;
  RefGrads g{std::vector<double>(p.q.size(), 0.0), std::vector<double>(p.k.size(), 0.0),
             std::vector<double>(p.v.size(), 0.0)};
  std::vector<double> dp;
  for_each_row(p, x, [&](std::int64_t, std::int64_t t, std::int64_t h, std::int64_t kvh, std::int64_t,
                         std::int64_t begin, const std::vector<double>& probs, double) {
    const std::int64_t qrow = (t * s.heads + h) * D;
    dp.assign(probs.size(), 0.0);
    double drow = 0;
    for (std::size_t c = 0; c < probs.size(); ++c) {
      for (std::int64_t d = 0; d < D; ++d) dp[c] += x.dout[qrow + d] * x.v[((begin + c) * s.kv_heads + kvh) * D + d];
      drow += probs[c] * dp[c];
    }
    for (std::size_t c = 0; c < probs.size(); ++c) {
      const std::int64_t kvrow = ((begin + c) * s.kv_heads + kvh) * D;
      const double ds = probs[c] * (dp[c] - drow) * s.scale;
      for (std::int64_t d = 0; d < D; ++d) {
        g.dq[qrow + d] += ds * x.k[kvrow + d];
        g.dk[kvrow + d] += ds * x.q[qrow + d];
        g.dv[kvrow + d] += probs[c] * x.dout[qrow + d];
      }
    }
  });
  return g;
}

// ---- comparisons --------------------------------------------------------------------------------

// Max abs error of `got` against `want`; checks it against tol * max(1, max |want|) and names
// the tensor and the first element beyond that bound when it fails.
double check_close(const std::string& name, const std::vector<float>& got, const std::vector<double>& want,
                   double tol) {
  REQUIRE(got.size() == want.size());
  double err = 0, scale = 1;
  std::size_t worst = 0, first_bad = got.size();
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!(e <= err)) err = e, worst = i;
    if (!(e <= tol * scale) && first_bad == got.size()) first_bad = i;
  }
  INFO(name << ": max abs err " << err << " at " << worst << " (scale " << scale << ")");
  if (first_bad < got.size()) INFO("first mismatch at " << first_bad << ": " << got[first_bad] << " vs " << want[first_bad]);
  CHECK(err <= tol * scale);
  return err;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b, std::size_t from, std::size_t to) {
  return std::equal(a.begin() + static_cast<std::ptrdiff_t>(from), a.begin() + static_cast<std::ptrdiff_t>(to),
                    b.begin() + static_cast<std::ptrdiff_t>(from),
                    [](float x, float y) { return std::memcmp(&x, &y, sizeof x) == 0; });
}
bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && bitwise_equal(a, b, 0, a.size());
}

struct HeadConfig {
  std::int64_t Hq, Hkv;
};
constexpr HeadConfig kHeads[] = {{8, 2}, {6, 6}, {4, 1}};
constexpr std::int64_t kHeadDims[] = {16, 32, 64, 128};
const std::vector<std::int32_t> kLens = {1, 7, 64, 130};  // a lone token, a partial tile, exact and ragged tiles

}  // namespace

TEST_CASE("attention forward matches float64 reference") {
  CpuBackend cpu(2);
  for (const HeadConfig& heads : kHeads)
    for (std::int64_t D : kHeadDims)
      for (bool causal : {true, false}) {
        CAPTURE(heads.Hq);
        CAPTURE(heads.Hkv);
        CAPTURE(D);
        CAPTURE(causal);
        const Problem p = make_problem(kLens, heads.Hq, heads.Hkv, D, causal, 17, /*padding=*/3);
        const RefForward want = reference_forward(p, Ref(p));
        const Forward flash = run_forward(cpu, AttentionImpl::flash, p);
        const Forward naive = run_forward(cpu, AttentionImpl::naive, p);
        const double flash_err = check_close("flash out", flash.out, want.out, kForwardTol);
        const double naive_err = check_close("naive out", naive.out, want.out, kForwardTol);
        check_close("flash lse", flash.lse, want.lse, kForwardTol);
        check_close("naive lse", naive.lse, want.lse, kForwardTol);
        check_close("naive probs", naive.probs, want.probs, kForwardTol);
        // FlashAttention's own bar: no worse than twice the naive kernel in the same precision.
        CHECK(flash_err <= 2 * naive_err + 1e-6);
      }
}

// Every head layout and head dim once (the float64 backward is the slow part under ASan).
TEST_CASE("attention backward matches float64 reference") {
  CpuBackend cpu(2);
  struct Config {
    HeadConfig heads;
    std::int64_t D;
  };
  const Config configs[] = {{{8, 2}, 16}, {{6, 6}, 32}, {{4, 1}, 64}, {{8, 2}, 128}, {{4, 1}, 128}};
  for (const Config& config : configs)
    for (bool causal : {true, false}) {
      const HeadConfig heads = config.heads;
      const std::int64_t D = config.D;
      CAPTURE(heads.Hq);
      CAPTURE(heads.Hkv);
      CAPTURE(D);
      CAPTURE(causal);
      const Problem p = make_problem(kLens, heads.Hq, heads.Hkv, D, causal, 29, /*padding=*/2);
      const RefGrads want = reference_backward(p, Ref(p));
      const Grads flash = run_backward(cpu, AttentionImpl::flash, p);
      const Grads naive = run_backward(cpu, AttentionImpl::naive, p);
      const char* names[] = {"dq", "dk", "dv"};
      const std::vector<float>* flash_g[] = {&flash.dq, &flash.dk, &flash.dv};
      const std::vector<float>* naive_g[] = {&naive.dq, &naive.dk, &naive.dv};
      const std::vector<double>* want_g[] = {&want.dq, &want.dk, &want.dv};
      for (int i = 0; i < 3; ++i) {
        const double flash_err = check_close(std::string("flash ") + names[i], *flash_g[i], *want_g[i], kGradTol);
        const double naive_err = check_close(std::string("naive ") + names[i], *naive_g[i], *want_g[i], kGradTol);
        CHECK(flash_err <= 2 * naive_err + 1e-6);
      }
    }
}

// L = sum(dout * out). The float64 analytic backward (which the kernels are held to above)
// against central differences of the float64 forward, eps 1e-3: truncation error ~eps^2,
// tolerance 1e-6. Then the fp32 kernels themselves, where rounding of L (about 1e-7 * |L|)
// over 2 eps dominates: tolerance 2e-3 absolute (seen: 3e-4).
TEST_CASE("attention gradients match finite differences") {
  CpuBackend cpu(1);  // hundreds of tiny calls: a thread team would only add wake-up latency
  for (bool causal : {true, false}) {
    CAPTURE(causal);
    Problem p = make_problem({5, 4}, 4, 2, 16, causal, 41);
    Ref x(p);
    const RefGrads analytic = reference_backward(p, x);
    auto loss64 = [&] {
      const RefForward f = reference_forward(p, x);
      double l = 0;
      for (std::size_t i = 0; i < f.out.size(); ++i) l += x.dout[i] * f.out[i];
      return l;
    };
    auto loss32 = [&](AttentionImpl impl) {
      const Forward f = run_forward(cpu, impl, p);
      double l = 0;
      for (std::size_t i = 0; i < f.out.size(); ++i) l += static_cast<double>(p.dout[i]) * f.out[i];
      return l;
    };
    const Grads flash = run_backward(cpu, AttentionImpl::flash, p);
    const Grads naive = run_backward(cpu, AttentionImpl::naive, p);
    struct Input {
      const char* name;
      std::vector<double>& x64;
      std::vector<float>& x32;
      const std::vector<double>& grad;
      const std::vector<float>& flash;
      const std::vector<float>& naive;
    };
    Input inputs[] = {{"q", x.q, p.q, analytic.dq, flash.dq, naive.dq},
                      {"k", x.k, p.k, analytic.dk, flash.dk, naive.dk},
                      {"v", x.v, p.v, analytic.dv, flash.dv, naive.dv}};
    constexpr double eps = 1e-3;
    for (Input& in : inputs)
      for (std::size_t i = 0; i < in.x64.size(); i += 7) {  // every 7th element: all tokens and heads
        CAPTURE(in.name);
        CAPTURE(i);
        const double saved = in.x64[i];
        in.x64[i] = saved + eps;
        const double up = loss64();
        in.x64[i] = saved - eps;
        const double down = loss64();
        in.x64[i] = saved;
        CHECK(std::abs((up - down) / (2 * eps) - in.grad[i]) <= 1e-6);

        const float saved32 = in.x32[i];
        const float hi = saved32 + static_cast<float>(eps), lo = saved32 - static_cast<float>(eps);
        for (AttentionImpl impl : {AttentionImpl::flash, AttentionImpl::naive}) {
          in.x32[i] = hi;
          const double up32 = loss32(impl);
          in.x32[i] = lo;
          const double down32 = loss32(impl);
          in.x32[i] = saved32;
          const float kernel = impl == AttentionImpl::flash ? in.flash[i] : in.naive[i];
          CHECK(std::abs((up32 - down32) / (static_cast<double>(hi) - lo) - kernel) <= 2e-3);
        }
      }
  }
}

TEST_CASE("attention never crosses document boundaries") {
  CpuBackend cpu(2);
  for (AttentionImpl impl : {AttentionImpl::flash, AttentionImpl::naive})
    for (bool causal : {true, false}) {
      CAPTURE(impl == AttentionImpl::flash);
      CAPTURE(causal);
      const Problem p = make_problem({37, 50, 20}, 4, 2, 32, causal, 53);
      Problem changed = p;  // document 2 (tokens [37, 87)) gets new q, k, v and dout
      std::uint64_t state = 99;
      auto reroll = [&](std::vector<float>& x, std::int64_t width) {
        const std::vector<float> fresh = uniform(static_cast<std::size_t>(50 * width), state);
        std::copy(fresh.begin(), fresh.end(), x.begin() + 37 * width);
      };
      reroll(changed.q, 4 * 32);
      reroll(changed.k, 2 * 32);
      reroll(changed.v, 2 * 32);
      reroll(changed.dout, 4 * 32);
      const Forward a = run_forward(cpu, impl, p), b = run_forward(cpu, impl, changed);
      const Grads ga = run_backward(cpu, impl, p), gb = run_backward(cpu, impl, changed);
      for (auto [from, to] : {std::pair<std::size_t, std::size_t>{0, 37}, {87, 107}}) {
        CHECK(bitwise_equal(a.out, b.out, from * 128, to * 128));
        CHECK(bitwise_equal(ga.dq, gb.dq, from * 128, to * 128));
        CHECK(bitwise_equal(ga.dk, gb.dk, from * 64, to * 64));
        CHECK(bitwise_equal(ga.dv, gb.dv, from * 64, to * 64));
        for (std::size_t h = 0; h < 4; ++h) CHECK(bitwise_equal(a.lse, b.lse, h * 107 + from, h * 107 + to));
      }
      CHECK_FALSE(bitwise_equal(a.out, b.out, 37 * 128, 87 * 128));  // the change did reach document 2
    }
}

TEST_CASE("attention leaves padding tokens at zero") {
  CpuBackend cpu(2);
  for (AttentionImpl impl : {AttentionImpl::flash, AttentionImpl::naive}) {
    const Problem p = make_problem({9, 20}, 2, 1, 16, true, 61, /*padding=*/5);
    const Forward f = run_forward(cpu, impl, p);
    const Grads g = run_backward(cpu, impl, p);
    const std::vector<float> zeros(5 * 32, 0.0f);
    CHECK(std::equal(f.out.begin() + 29 * 32, f.out.end(), zeros.begin()));
    CHECK(std::equal(g.dq.begin() + 29 * 32, g.dq.end(), zeros.begin()));
    CHECK(std::equal(g.dk.begin() + 29 * 16, g.dk.end(), zeros.begin()));
    CHECK(std::equal(g.dv.begin() + 29 * 16, g.dv.end(), zeros.begin()));
    for (std::size_t h = 0; h < 2; ++h)
      for (std::size_t t = 29; t < 34; ++t) CHECK(f.lse[h * 34 + t] == 0.0f);
  }
}

// Every output element has one owner task with a fixed summation order, so results are
// bit-identical across calls and across thread counts (1 vs 2 here).
TEST_CASE("attention is deterministic across calls and thread counts") {
  CpuBackend one(1), two(2);
  for (AttentionImpl impl : {AttentionImpl::flash, AttentionImpl::naive}) {
    CAPTURE(impl == AttentionImpl::flash);
    const Problem p = make_problem({100, 3, 61}, 8, 2, 64, true, 71);
    const Forward a = run_forward(two, impl, p), b = run_forward(two, impl, p), c = run_forward(one, impl, p);
    const Grads ga = run_backward(two, impl, p), gb = run_backward(two, impl, p), gc = run_backward(one, impl, p);
    CHECK(bitwise_equal(a.out, b.out));
    CHECK(bitwise_equal(a.lse, b.lse));
    CHECK(bitwise_equal(a.probs, b.probs));
    CHECK(bitwise_equal(ga.dq, gb.dq));
    CHECK(bitwise_equal(ga.dk, gb.dk));
    CHECK(bitwise_equal(ga.dv, gb.dv));
    CHECK(bitwise_equal(a.out, c.out));
    CHECK(bitwise_equal(a.lse, c.lse));
    CHECK(bitwise_equal(a.probs, c.probs));
    CHECK(bitwise_equal(ga.dq, gc.dq));
    CHECK(bitwise_equal(ga.dk, gc.dk));
    CHECK(bitwise_equal(ga.dv, gc.dv));
  }
}

TEST_CASE("naive attention probs elements") {
  const std::vector<std::int32_t> cu = {0, 1, 8, 72, 202};
  CHECK(naive_attention_probs_elements(cu.data(), 4, 8) == 8 * (1 + 49 + 4096 + 16900));
  CHECK(naive_attention_probs_elements(cu.data(), 0, 8) == 0);
  const std::vector<std::int32_t> with_empty = {0, 0, 5, 5};
  CHECK(naive_attention_probs_elements(with_empty.data(), 3, 3) == 75);
}

// Edge cases of packed batches: empty documents anywhere in cu_seqlens (first, between, last)
// and padding tokens after the last document, which see no keys at all: their rows must come
// out exactly 0, never NaN (an online softmax over nothing divides 0 by 0), and every real row
// must still match the reference. Head dims that are not multiples of the 16-lane vector too.
TEST_CASE("attention handles empty documents and keyless padding rows in forward and backward") {
  CpuBackend cpu(2);
  for (AttentionImpl impl : {AttentionImpl::flash, AttentionImpl::naive})
    for (bool causal : {true, false})
      for (std::int64_t D : {40, 96}) {
        CAPTURE(impl == AttentionImpl::flash);
        CAPTURE(causal);
        CAPTURE(D);
        const Problem p = make_problem({0, 5, 0, 33, 0}, 4, 2, D, causal, 83, /*padding=*/7);
        const Ref x(p);
        const Forward f = run_forward(cpu, impl, p);
        const Grads g = run_backward(cpu, impl, p);
        for (const auto* t : {&f.out, &f.lse, &g.dq, &g.dk, &g.dv})
          CHECK(std::all_of(t->begin(), t->end(), [](float e) { return std::isfinite(e); }));
        const RefForward rf = reference_forward(p, x);
        const RefGrads rg = reference_backward(p, x);
        check_close("out", f.out, rf.out, kForwardTol);
        check_close("lse", f.lse, rf.lse, kForwardTol);
        check_close("dq", g.dq, rg.dq, kGradTol);
        check_close("dk", g.dk, rg.dk, kGradTol);
        check_close("dv", g.dv, rg.dv, kGradTol);
        const std::size_t padding_from = 38;  // tokens [38, 45) are padding
        CHECK(std::all_of(f.out.begin() + static_cast<std::ptrdiff_t>(padding_from * 4 * D), f.out.end(),
                          [](float e) { return e == 0.0f; }));
        CHECK(std::all_of(g.dk.begin() + static_cast<std::ptrdiff_t>(padding_from * 2 * D), g.dk.end(),
                          [](float e) { return e == 0.0f; }));
      }
}
