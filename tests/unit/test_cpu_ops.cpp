// CPU backend ops: each against a float64 reference written here, each backward against
// central finite differences of its forward, *_apply bit-identical to forward, and
// determinism (same bits on a second run; weight-gradient reductions independent of threads).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "ops/cpu/cpu_math.hpp"

using namespace llmlab;

namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

Vec random_vec(std::size_t n, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Checks |got - want| <= atol + rtol |want| everywhere; on failure names the tensor, the first
// mismatches and the max abs error.
void check_close(const std::string& name, const Vec& got, const DVec& want, double atol, double rtol) {
  REQUIRE(got.size() == want.size());
  double max_abs = 0;
  int bad = 0;
  std::string first;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    max_abs = std::max(max_abs, err);
    if (!(err <= atol + rtol * std::abs(want[i]))) {
      if (bad++ < 3) first += " [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " + std::to_string(want[i]);
    }
  }
  INFO(name << ": " << bad << " mismatches, max abs err " << max_abs << first);
  CHECK(bad == 0);
}

void check_bitwise(const std::string& name, const Vec& a, const Vec& b) {
  INFO(name);
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

DVec to_double(const Vec& v) { return DVec(v.begin(), v.end()); }

// Central differences of a scalar function of x, at every index: (f(x+h) - f(x-h)) / 2h.
DVec finite_diff(Vec x, const std::function<double(const Vec&)>& f, float h) {
  DVec g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float keep = x[i];
    x[i] = keep + h;
    const double up = f(x);
    x[i] = keep - h;
    const double down = f(x);
    x[i] = keep;
    g[i] = (up - down) / (2.0 * static_cast<double>(h));
  }
  return g;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

// Finite differences on float32 forwards with h = 1e-2 on O(1) inputs: the truncation error is
// O(h^2) ~ 1e-4 and the rounding error ~ 1e-7 * |L| / h ~ 1e-4, so 2e-3 + 1e-2 relative.
constexpr float kFdStep = 1e-2f;
constexpr double kFdAtol = 2e-3, kFdRtol = 1e-2;

}  // namespace

// --- memory and exp --------------------------------------------------------------------------

TEST_CASE("cpu memory ops allocate aligned and copy zero scale") {
  CpuBackend be;
  CHECK(be.threads() >= 1);
  float* p = static_cast<float*>(be.allocate(1000 * sizeof(float)));
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
  const Vec src = random_vec(1000, 1);
  be.copy_from_host(p, src.data(), src.size() * sizeof(float));
  Vec back(1000);
  be.copy_to_host(back.data(), p, back.size() * sizeof(float));
  check_bitwise("copy round trip", back, src);
  be.scale(p, 1000, 0.5f);
  be.copy(back.data(), p, 1000);
  CHECK(back[7] == src[7] * 0.5f);
  be.zero(p, 1000);
  CHECK(p[0] == 0.0f);
  CHECK(p[999] == 0.0f);
  be.release(p);
  be.release(be.allocate(0));
  CHECK_THROWS_AS(be.allocate(std::numeric_limits<std::size_t>::max() - 8), Error);
}

TEST_CASE("cpu exp_approx within 3 ulp of exp") {
  double worst = 0;
  for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(static_cast<double>(cpu::exp_approx(x)) - want) / want);
  }
  CHECK(worst < 3.6e-7);  // 3 ulp of float
  CHECK(cpu::exp_approx(-1e4f) < 2e-38f);
  CHECK(cpu::sigmoid_approx(1e4f) == 1.0f);
  CHECK(cpu::sigmoid_approx(-1e4f) < 1e-37f);
}

// --- gemm and bias -----------------------------------------------------------------------------

TEST_CASE("cpu gemm matches float64 reference for all transposes") {
  CpuBackend be;
  const std::int64_t M = 37, N = 29, K = 23;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const float beta : {0.0f, 1.0f, 0.3f}) {
        // Leading dims wider than the stored rows, so the strides are exercised.
        const std::int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
        const Vec A = random_vec(static_cast<std::size_t>((ta ? K : M) * lda), 2);
        const Vec B = random_vec(static_cast<std::size_t>((tb ? N : K) * ldb), 3);
        Vec C = random_vec(static_cast<std::size_t>(M * ldc), 4);
        // beta = 0 must overwrite, never read: NaN in C must not leak into the result.
        if (beta == 0.0f) std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
        const float alpha = 0.7f;
        DVec want = to_double(C);
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t j = 0; j < N; ++j) {
            double s = 0;
            for (std::int64_t k = 0; k < K; ++k) {
              const float a = ta ? A[k * lda + i] : A[i * lda + k];
              const float b = tb ? B[j * ldb + k] : B[k * ldb + j];
              s += static_cast<double>(a) * static_cast<double>(b);
            }
            const double c = beta == 0.0f ? 0.0 : static_cast<double>(beta) * want[i * ldc + j];
            want[i * ldc + j] = static_cast<double>(alpha) * s + c;
          }
        be.gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
        // Only the M x N window is defined; the padding columns keep their old values.
        Vec got_window, padding;
        DVec want_window;
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t j = 0; j < N; ++j) {
            got_window.push_back(C[i * ldc + j]);
            want_window.push_back(want[i * ldc + j]);
          }
        INFO("trans_a " << ta << " trans_b " << tb << " beta " << beta);
        check_close("C", got_window, want_window, 1e-5, 1e-5);
      }
}

TEST_CASE("cpu gemm with K zero scales C and is deterministic") {
  CpuBackend be;
  Vec C(6, 2.0f);
  be.gemm(false, false, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 0.5f, C.data(), 3);
  CHECK(C[5] == 1.0f);
  const std::int64_t n = 192;
  const Vec A = random_vec(n * n, 5), B = random_vec(n * n, 6);
  Vec C1(n * n, 1.0f), C2(n * n, 1.0f);
  be.gemm(true, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 1.0f, C1.data(), n);
  be.gemm(true, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 1.0f, C2.data(), n);
  check_bitwise("gemm TN (matmul primitive) twice", C1, C2);
  be.gemm(false, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C1.data(), n);
  be.gemm(false, false, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C2.data(), n);
  check_bitwise("gemm NN (dnnl_sgemm) twice", C1, C2);
}

TEST_CASE("cpu bias forward and backward") {
  CpuBackend be;
  const std::int64_t T = 9, N = 70, ld = 75;  // N > one 64-column slice, rows padded
  Vec y = random_vec(T * ld, 7);
  const Vec bias = random_vec(N, 8);
  DVec want = to_double(y);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < N; ++j) want[t * ld + j] = static_cast<double>(y[t * ld + j] + bias[j]);
  be.bias_forward(y.data(), bias.data(), T, N, ld);
  check_close("y", y, want, 0, 0);
  Vec dbias(N, 0.25f);
  DVec want_db(N, 0.25);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < N; ++j) want_db[j] += static_cast<double>(y[t * ld + j]);
  be.bias_backward(y.data(), dbias.data(), T, N, ld);
  check_close("dbias (accumulated)", dbias, want_db, 1e-6, 1e-6);
}

// --- norms ----------------------------------------------------------------------------------------

namespace {

struct NormCase {
  std::int64_t T = 5, C = 80;  // C spans a full and a partial 16-lane block and 64-column slice
  Vec x = random_vec(static_cast<std::size_t>(T * C), 11, -2.0f, 2.0f);
  Vec w = random_vec(static_cast<std::size_t>(C), 12, 0.5f, 1.5f);
  Vec b = random_vec(static_cast<std::size_t>(C), 13);
  Vec r = random_vec(static_cast<std::size_t>(T * C), 14);  // L = sum(r * out)
  float eps = 1e-5f;
};

// LayerNorm (rms = false) or RMSNorm in float64.
DVec norm_reference(const NormCase& c, bool rms) {
  DVec out(c.x.size());
  for (std::int64_t t = 0; t < c.T; ++t) {
    double mean = 0, var = 0;
    for (std::int64_t i = 0; i < c.C; ++i) mean += c.x[t * c.C + i];
    mean = rms ? 0.0 : mean / static_cast<double>(c.C);
    for (std::int64_t i = 0; i < c.C; ++i) var += (c.x[t * c.C + i] - mean) * (c.x[t * c.C + i] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(c.C) + static_cast<double>(c.eps));
    for (std::int64_t i = 0; i < c.C; ++i)
      out[t * c.C + i] = (c.x[t * c.C + i] - mean) * rstd * c.w[i] + (rms ? 0.0 : static_cast<double>(c.b[i]));
  }
  return out;
}

}  // namespace

TEST_CASE("cpu layernorm forward apply and backward") {
  CpuBackend be;
  NormCase c;
  Vec out(c.x.size()), stats(2 * c.T), again(c.x.size());
  be.layernorm_forward(c.x.data(), c.w.data(), c.b.data(), out.data(), stats.data(), c.T, c.C, c.eps);
  check_close("out", out, norm_reference(c, false), 1e-5, 1e-5);
  be.layernorm_apply(c.x.data(), c.w.data(), c.b.data(), stats.data(), again.data(), c.T, c.C);
  check_bitwise("apply == forward", again, out);

  // Gradients accumulate into pre-filled buffers: compare (result - prefill) with FD of L.
  Vec dx(c.x.size(), 0.5f), dw(c.C, 0.25f), db(c.C, -0.25f);
  be.layernorm_backward(c.r.data(), c.x.data(), c.w.data(), stats.data(), dx.data(), dw.data(), db.data(), c.T, c.C);
  auto loss = [&](const Vec& x, const Vec& w, const Vec& b) {
    Vec o(x.size()), s(2 * c.T);
    be.layernorm_forward(x.data(), w.data(), b.data(), o.data(), s.data(), c.T, c.C, c.eps);
    return dot(o, c.r);
  };
  auto minus = [](Vec v, float k) {
    for (auto& e : v) e -= k;
    return v;
  };
  check_close("dx", minus(dx, 0.5f), finite_diff(c.x, [&](const Vec& x) { return loss(x, c.w, c.b); }, kFdStep), kFdAtol,
              kFdRtol);
  check_close("dw", minus(dw, 0.25f), finite_diff(c.w, [&](const Vec& w) { return loss(c.x, w, c.b); }, kFdStep),
              kFdAtol, kFdRtol);
  check_close("db", minus(db, -0.25f), finite_diff(c.b, [&](const Vec& b) { return loss(c.x, c.w, b); }, kFdStep),
              kFdAtol, kFdRtol);
}

TEST_CASE("cpu rmsnorm forward apply and backward") {
  CpuBackend be;
  NormCase c;
  Vec out(c.x.size()), rstd(c.T), again(c.x.size());
  be.rmsnorm_forward(c.x.data(), c.w.data(), out.data(), rstd.data(), c.T, c.C, c.eps);
  check_close("out", out, norm_reference(c, true), 1e-5, 1e-5);
  be.rmsnorm_apply(c.x.data(), c.w.data(), rstd.data(), again.data(), c.T, c.C);
  check_bitwise("apply == forward", again, out);

  Vec dx(c.x.size(), 0.0f), dw(c.C, 0.0f);
  be.rmsnorm_backward(c.r.data(), c.x.data(), c.w.data(), rstd.data(), dx.data(), dw.data(), c.T, c.C);
  auto loss = [&](const Vec& x, const Vec& w) {
    Vec o(x.size()), s(c.T);
    be.rmsnorm_forward(x.data(), w.data(), o.data(), s.data(), c.T, c.C, c.eps);
    return dot(o, c.r);
  };
  check_close("dx", dx, finite_diff(c.x, [&](const Vec& x) { return loss(x, c.w); }, kFdStep), kFdAtol, kFdRtol);
  check_close("dw", dw, finite_diff(c.w, [&](const Vec& w) { return loss(c.x, w); }, kFdStep), kFdAtol, kFdRtol);
}

TEST_CASE("cpu norm backward is deterministic and thread independent") {
  CpuBackend one(1), two(2);
  const std::int64_t T = 300, C = 160;  // T*C above the parallel threshold
  const Vec x = random_vec(T * C, 21), w = random_vec(C, 22), b = random_vec(C, 23), dout = random_vec(T * C, 24);
  auto run = [&](CpuBackend& be, bool rms) {
    Vec out(T * C), stats(2 * T), dx(T * C, 0.0f), dw(C, 0.0f), db(C, 0.0f);
    if (rms) {
      be.rmsnorm_forward(x.data(), w.data(), out.data(), stats.data(), T, C, 1e-6f);
      be.rmsnorm_backward(dout.data(), x.data(), w.data(), stats.data(), dx.data(), dw.data(), T, C);
    } else {
      be.layernorm_forward(x.data(), w.data(), b.data(), out.data(), stats.data(), T, C, 1e-5f);
      be.layernorm_backward(dout.data(), x.data(), w.data(), stats.data(), dx.data(), dw.data(), db.data(), T, C);
    }
    Vec all = out;
    all.insert(all.end(), dx.begin(), dx.end());
    all.insert(all.end(), dw.begin(), dw.end());
    all.insert(all.end(), db.begin(), db.end());
    return all;
  };
  for (const bool rms : {false, true}) {
    INFO("rms " << rms);
    check_bitwise("two runs", run(two, rms), run(two, rms));
    check_bitwise("1 vs 2 threads", run(one, rms), run(two, rms));
  }
}

// --- pointwise ----------------------------------------------------------------------------------

TEST_CASE("cpu rope matches reference and backward is the transposed rotation") {
  CpuBackend be;
  const std::int64_t T = 6, H = 3, D = 8;
  const float theta = 10000.0f;
  const std::vector<std::int32_t> pos = {0, 1, 2, 0, 5, 63};  // two packed documents
  const Vec x = random_vec(T * H * D, 31);
  DVec want(x.size());
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < D / 2; ++i) {
        const double angle = pos[t] * std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(D));
        const std::int64_t a = (t * H + h) * D + i, b = a + D / 2;
        want[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
        want[b] = x[b] * std::cos(angle) + x[a] * std::sin(angle);
      }
  Vec y = x;
  be.rope_forward(y.data(), pos.data(), T, H, D, theta);
  // The angle is a float32 product pos * inv_freq as in Hugging Face: ~pos * 6e-8 rad off.
  check_close("rope(x)", y, want, 2e-6, 1e-5);

  // Backward is R^T: <R x, r> == <x, R^T r>, and R^T R x == x.
  const Vec r = random_vec(x.size(), 32);
  Vec rt = r;
  be.rope_backward(rt.data(), pos.data(), T, H, D, theta);
  CHECK(std::abs(dot(y, r) - dot(x, rt)) < 1e-5);
  Vec back = y;
  be.rope_backward(back.data(), pos.data(), T, H, D, theta);
  check_close("R^T R x", back, to_double(x), 1e-6, 1e-6);

  // And against finite differences of L = <rope(x), r>.
  auto loss = [&](const Vec& v) {
    Vec o = v;
    be.rope_forward(o.data(), pos.data(), T, H, D, theta);
    return dot(o, r);
  };
  check_close("drope", rt, finite_diff(x, loss, kFdStep), kFdAtol, kFdRtol);
  std::vector<std::int32_t> bad = pos;
  bad[2] = -1;
  CHECK_THROWS_AS(be.rope_forward(y.data(), bad.data(), T, H, D, theta), Error);
}

TEST_CASE("cpu gelu forward and backward") {
  CpuBackend be;
  Vec x = random_vec(301, 41, -6.0f, 6.0f);
  x[0] = -30.0f;  // saturated tails
  x[1] = 30.0f;
  x[2] = 0.0f;
  const double c = std::sqrt(2.0 / M_PI);
  DVec want(x.size()), want_dx(x.size());
  const Vec dout = random_vec(x.size(), 42);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    const double th = std::tanh(c * (v + 0.044715 * v * v * v));
    want[i] = 0.5 * v * (1 + th);
    want_dx[i] = dout[i] * (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * c * (1 + 3 * 0.044715 * v * v));
  }
  Vec out(x.size()), dx(x.size(), 99.0f);  // dx is overwritten, not accumulated
  be.gelu_forward(x.data(), out.data(), static_cast<std::int64_t>(x.size()));
  check_close("gelu", out, want, 1e-7, 1e-6);
  be.gelu_backward(dout.data(), x.data(), dx.data(), static_cast<std::int64_t>(x.size()));
  check_close("dgelu", dx, want_dx, 1e-6, 1e-5);
  auto loss = [&](const Vec& v) {
    Vec o(v.size());
    be.gelu_forward(v.data(), o.data(), static_cast<std::int64_t>(v.size()));
    return dot(o, dout);
  };
  check_close("dgelu vs FD", dx, finite_diff(x, loss, kFdStep), kFdAtol, kFdRtol);
}

TEST_CASE("cpu swiglu forward and backward") {
  CpuBackend be;
  const std::size_t n = 257;
  const Vec gate = random_vec(n, 51, -8.0f, 8.0f), up = random_vec(n, 52, -2.0f, 2.0f), dout = random_vec(n, 53);
  DVec want(n), want_dg(n), want_du(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double g = gate[i], s = 1.0 / (1.0 + std::exp(-g));
    want[i] = g * s * up[i];
    want_dg[i] = dout[i] * up[i] * s * (1 + g * (1 - s));
    want_du[i] = dout[i] * g * s;
  }
  Vec out(n), dg(n, 7.0f), du(n, 7.0f);
  be.swiglu_forward(gate.data(), up.data(), out.data(), static_cast<std::int64_t>(n));
  check_close("swiglu", out, want, 1e-7, 1e-6);
  be.swiglu_backward(dout.data(), gate.data(), up.data(), dg.data(), du.data(), static_cast<std::int64_t>(n));
  check_close("dgate", dg, want_dg, 1e-6, 1e-5);
  check_close("dup", du, want_du, 1e-6, 1e-5);
  auto loss = [&](const Vec& g, const Vec& u) {
    Vec o(n);
    be.swiglu_forward(g.data(), u.data(), o.data(), static_cast<std::int64_t>(n));
    return dot(o, dout);
  };
  check_close("dgate vs FD", dg, finite_diff(gate, [&](const Vec& g) { return loss(g, up); }, kFdStep), kFdAtol, kFdRtol);
  check_close("dup vs FD", du, finite_diff(up, [&](const Vec& u) { return loss(gate, u); }, kFdStep), kFdAtol, kFdRtol);
}

TEST_CASE("cpu embedding forward and backward with repeated ids") {
  CpuBackend one(1), two(2);
  const std::int64_t T = 7, C = 70, V = 5, P = 4;
  const std::vector<std::int32_t> ids = {3, 1, 3, 3, 0, 1, 4}, pos = {0, 1, 2, 3, 0, 1, 2};
  const Vec wte = random_vec(V * C, 61), wpe = random_vec(P * C, 62), dout = random_vec(T * C, 63);
  DVec want(T * C), want_dwte(V * C, 1.0), want_dwpe(P * C, 1.0);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < C; ++j) {
      want[t * C + j] = static_cast<double>(wte[ids[t] * C + j] + wpe[pos[t] * C + j]);
      want_dwte[ids[t] * C + j] += dout[t * C + j];
      want_dwpe[pos[t] * C + j] += dout[t * C + j];
    }
  Vec out(T * C);
  two.embedding_forward(ids.data(), pos.data(), wte.data(), wpe.data(), out.data(), T, C);
  check_close("out", out, want, 0, 0);
  two.embedding_forward(ids.data(), pos.data(), wte.data(), nullptr, out.data(), T, C);
  CHECK(out[C] == wte[1 * C]);  // no position table: token embedding only
  Vec dwte(V * C, 1.0f), dwpe(P * C, 1.0f);
  two.embedding_backward(dout.data(), ids.data(), pos.data(), dwte.data(), dwpe.data(), T, C);
  check_close("dwte (accumulated)", dwte, want_dwte, 1e-6, 1e-6);
  check_close("dwpe (accumulated)", dwpe, want_dwpe, 1e-6, 1e-6);

  // Finite differences of L = <out, dout> w.r.t. wte (linear, so the check is tight).
  auto loss = [&](const Vec& w) {
    Vec o(T * C);
    two.embedding_forward(ids.data(), pos.data(), w.data(), wpe.data(), o.data(), T, C);
    return dot(o, dout);
  };
  Vec fd_dwte = dwte;
  for (auto& v : fd_dwte) v -= 1.0f;
  check_close("dwte vs FD", fd_dwte, finite_diff(wte, loss, kFdStep), kFdAtol, kFdRtol);

  // Thread-count independence on a size above the parallel threshold.
  const std::int64_t T2 = 600, C2 = 130;
  std::vector<std::int32_t> ids2(T2), pos2(T2);
  for (std::int64_t t = 0; t < T2; ++t) {
    ids2[t] = static_cast<std::int32_t>((t * 7) % 11);
    pos2[t] = static_cast<std::int32_t>(t % 13);
  }
  const Vec dout2 = random_vec(T2 * C2, 64);
  Vec a(11 * C2, 0.0f), b(11 * C2, 0.0f), pa(13 * C2, 0.0f), pb(13 * C2, 0.0f);
  one.embedding_backward(dout2.data(), ids2.data(), pos2.data(), a.data(), pa.data(), T2, C2);
  two.embedding_backward(dout2.data(), ids2.data(), pos2.data(), b.data(), pb.data(), T2, C2);
  check_bitwise("dwte 1 vs 2 threads", a, b);
  check_bitwise("dwpe 1 vs 2 threads", pa, pb);
}

// --- loss ----------------------------------------------------------------------------------------

namespace {

struct CeRef {
  DVec losses, lse, grad;
  double total = 0;
};

CeRef cross_entropy_reference(const Vec& logits, const std::vector<std::int32_t>& targets,
                              const std::vector<std::uint8_t>& mask, std::int64_t T, std::int64_t V, double scale) {
  CeRef r{DVec(T), DVec(T), DVec(T * V), 0};
  for (std::int64_t t = 0; t < T; ++t) {
    double m = -1e300, s = 0;
    for (std::int64_t i = 0; i < V; ++i) m = std::max(m, static_cast<double>(logits[t * V + i]));
    for (std::int64_t i = 0; i < V; ++i) s += std::exp(logits[t * V + i] - m);
    r.lse[t] = m + std::log(s);
    const bool counted = targets[t] >= 0 && mask[t] != 0;
    if (!counted) continue;
    r.losses[t] = r.lse[t] - logits[t * V + targets[t]];
    r.total += r.losses[t];
    for (std::int64_t i = 0; i < V; ++i)
      r.grad[t * V + i] = scale * (std::exp(logits[t * V + i] - r.lse[t]) - (i == targets[t] ? 1.0 : 0.0));
  }
  return r;
}

}  // namespace

TEST_CASE("cpu cross entropy matches reference with masked rows and large logits") {
  CpuBackend be;
  const std::int64_t T = 6, V = 103;
  const std::vector<std::int32_t> targets = {5, -1, 102, 0, 7, 50};
  const std::vector<std::uint8_t> mask = {1, 1, 1, 0, 1, 1};  // row 1 target -1, row 3 masked
  for (const float offset : {0.0f, 1e4f}) {
    INFO("logit offset " << offset);
    Vec logits = random_vec(T * V, 71, -5.0f, 5.0f);
    for (std::int64_t i = 0; i < V; ++i) logits[4 * V + i] += offset;  // one row at ~1e4
    logits[5 * V + 50] = 80.0f + offset;  // a confident row: p(target) ~ 1
    const CeRef ref = cross_entropy_reference(logits, targets, mask, T, V, 0.25);
    Vec losses(T), lse(T), work = logits;
    const double total = be.cross_entropy(work.data(), targets.data(), mask.data(), losses.data(), lse.data(), T, V, 0.25f);
    CHECK(std::abs(total - ref.total) < 1e-5 * std::max(1.0, ref.total));
    check_close("losses", losses, ref.losses, 2e-6, 1e-5);
    check_close("lse", lse, ref.lse, 1e-6, 1e-6);
    check_close("grad", work, ref.grad, 1e-7, 1e-5);
    CHECK(losses[1] == 0.0f);
    CHECK(losses[3] == 0.0f);

    Vec untouched = logits;  // grad_scale = 0: losses only, logits unchanged
    const double eval = be.cross_entropy(untouched.data(), targets.data(), mask.data(), losses.data(), lse.data(), T, V, 0.0f);
    CHECK(eval == total);
    check_bitwise("logits kept", untouched, logits);
  }
  const std::vector<std::int32_t> bad = {0, 0, 0, 0, 0, V};
  Vec logits(T * V), losses(T), lse(T);
  CHECK_THROWS_AS(be.cross_entropy(logits.data(), bad.data(), nullptr, losses.data(), lse.data(), T, V, 1.0f), Error);
}

TEST_CASE("cpu cross entropy gradient matches finite differences of its loss") {
  CpuBackend be;
  const std::int64_t T = 3, V = 37;
  const std::vector<std::int32_t> targets = {4, -1, 36};
  const std::vector<std::uint8_t> mask = {1, 1, 1};
  const Vec logits = random_vec(T * V, 72, -3.0f, 3.0f);
  Vec grad = logits, losses(T), lse(T);
  be.cross_entropy(grad.data(), targets.data(), mask.data(), losses.data(), lse.data(), T, V, 1.0f);
  auto loss = [&](const Vec& x) {
    Vec w = x, l(T), s(T);
    return be.cross_entropy(w.data(), targets.data(), mask.data(), l.data(), s.data(), T, V, 0.0f);
  };
  check_close("dlogits", grad, finite_diff(logits, loss, kFdStep), 1e-3, kFdRtol);
}

TEST_CASE("cpu cross entropy backward with per token weights matches reference and finite differences") {
  CpuBackend be;
  const std::int64_t T = 5, V = 61;
  const std::vector<std::int32_t> targets = {3, -1, 60, 0, 17};
  const std::vector<std::uint8_t> mask = {1, 1, 1, 1, 1};
  const Vec dloss = {0.5f, 2.0f, -1.25f, 0.0f, 3.0f};  // row 1 has no target, row 3 weight 0
  for (const float offset : {0.0f, 1e4f}) {
    INFO("logit offset " << offset);
    Vec logits = random_vec(T * V, 74, -4.0f, 4.0f);
    for (std::int64_t i = 0; i < V; ++i) logits[2 * V + i] += offset;
    const CeRef ref = cross_entropy_reference(logits, targets, mask, T, V, 1.0);
    Vec work = logits, losses(T), lse(T);
    be.cross_entropy(work.data(), targets.data(), mask.data(), losses.data(), lse.data(), T, V, 0.0f);
    be.cross_entropy_backward(work.data(), targets.data(), dloss.data(), T, V);
    DVec expected(T * V);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t i = 0; i < V; ++i) expected[t * V + i] = (targets[t] < 0 ? 0.0 : dloss[t]) * ref.grad[t * V + i];
    check_close("weighted grad", work, expected, 1e-7, 1e-5);
    for (std::int64_t i = 0; i < V; ++i) CHECK(work[3 * V + i] == 0.0f);
  }
  // d/dlogits of sum_t dloss[t] * loss[t], by central differences.
  const Vec logits = random_vec(T * V, 75, -3.0f, 3.0f);
  Vec grad = logits, losses(T), lse(T);
  be.cross_entropy(grad.data(), targets.data(), mask.data(), losses.data(), lse.data(), T, V, 0.0f);
  be.cross_entropy_backward(grad.data(), targets.data(), dloss.data(), T, V);
  auto weighted = [&](const Vec& x) {
    Vec w = x, l(T), s(T);
    be.cross_entropy(w.data(), targets.data(), mask.data(), l.data(), s.data(), T, V, 0.0f);
    double total = 0;
    for (std::int64_t t = 0; t < T; ++t) total += static_cast<double>(dloss[t]) * l[t];
    return total;
  };
  check_close("dlogits", grad, finite_diff(logits, weighted, kFdStep), 1e-3, kFdRtol);
  const std::vector<std::int32_t> bad = {0, 0, 0, 0, V};
  CHECK_THROWS_AS(be.cross_entropy_backward(grad.data(), bad.data(), dloss.data(), T, V), Error);
  // A uniform weight reproduces the fused op's gradient bit for bit.
  const Vec uniform(T, 0.75f);
  Vec fused = logits, split = logits;
  be.cross_entropy(fused.data(), targets.data(), nullptr, losses.data(), lse.data(), T, V, 0.75f);
  be.cross_entropy_backward(split.data(), targets.data(), uniform.data(), T, V);
  check_bitwise("split = fused", split, fused);
}

TEST_CASE("cpu cross entropy is deterministic across runs and threads") {
  CpuBackend one(1), two(2);
  const std::int64_t T = 40, V = 1000;
  std::vector<std::int32_t> targets(T);
  for (std::int64_t t = 0; t < T; ++t) targets[t] = static_cast<std::int32_t>((t * 37) % V);
  const Vec logits = random_vec(T * V, 73, -10.0f, 10.0f);
  auto run = [&](CpuBackend& be) {
    Vec w = logits, losses(T), lse(T);
    const double total = be.cross_entropy(w.data(), targets.data(), nullptr, losses.data(), lse.data(), T, V, 0.5f);
    w.push_back(static_cast<float>(total));
    w.insert(w.end(), lse.begin(), lse.end());
    return w;
  };
  check_bitwise("two runs", run(two), run(two));
  check_bitwise("1 vs 2 threads", run(one), run(two));
}

// --- optimizer and reductions ----------------------------------------------------------------------

TEST_CASE("cpu adamw matches scalar reference over steps") {
  CpuBackend be;
  const std::size_t n = 1000;
  Vec p = random_vec(n, 81), m(n, 0.0f), v(n, 0.0f);
  DVec rp = to_double(p), rm(n, 0.0), rv(n, 0.0);
  const double lr = 1e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  for (std::int64_t step = 1; step <= 4; ++step) {
    const Vec g = random_vec(n, static_cast<std::uint32_t>(90 + step), -0.1f, 0.1f);
    be.adamw(p.data(), g.data(), m.data(), v.data(), static_cast<std::int64_t>(n), static_cast<float>(lr),
             static_cast<float>(b1), static_cast<float>(b2), static_cast<float>(eps), static_cast<float>(wd), step);
    for (std::size_t i = 0; i < n; ++i) {
      rp[i] *= 1 - lr * wd;
      rm[i] = b1 * rm[i] + (1 - b1) * g[i];
      rv[i] = b2 * rv[i] + (1 - b2) * g[i] * g[i];
      const double mhat = rm[i] / (1 - std::pow(b1, step)), vhat = rv[i] / (1 - std::pow(b2, step));
      rp[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
  check_close("p", p, rp, 1e-6, 1e-5);
  check_close("m", m, rm, 1e-8, 1e-5);
  check_close("v", v, rv, 1e-10, 1e-5);
}

TEST_CASE("cpu sum_squares is exact enough and thread independent") {
  CpuBackend one(1), two(2);
  const std::int64_t n = 3 * 65536 + 17;  // several fixed chunks and a ragged tail
  const Vec x = random_vec(static_cast<std::size_t>(n), 101, -3.0f, 3.0f);
  double want = 0;
  for (const float v : x) want += static_cast<double>(v) * static_cast<double>(v);
  const double got = two.sum_squares(x.data(), n);
  CHECK(std::abs(got - want) < 1e-12 * want);
  CHECK(one.sum_squares(x.data(), n) == got);
  CHECK(two.sum_squares(x.data(), n) == got);
  CHECK(two.sum_squares(x.data(), 0) == 0.0);
}
