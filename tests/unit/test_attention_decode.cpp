// CPU decode attention (one query per sequence against a KV cache) against a float64 reference
// written here: lengths from 1 to past a cache page, GQA ratios 1/2/4, head dims 16 and 64,
// rows mapped to cache sequences out of order, empty rows, and agreement with the flash
// kernel's last causal row (what prefill-then-decode relies on).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/random.hpp"
#include "ops/cpu/cpu_backend.hpp"

using namespace llmlab;

namespace {

// Relative to max(1, max |reference|): fp32 sums over at most 130 keys of products of values
// in [-1, 1], the flash forward's bound (test_attention.cpp); the worst error seen was 1.3e-7
// against float64 and 9e-8 against the flash kernel.
constexpr double kTol = 5e-6;

std::vector<float> uniform(std::size_t n, std::uint64_t& state) {
  std::vector<float> x(n);
  for (float& e : x) e = static_cast<float>(static_cast<double>(splitmix64(state) >> 11) * 0x1p-52 - 1.0);
  return x;
}

struct Problem {
  DecodeAttentionShape s;
  std::int64_t sequences = 0;
  std::vector<std::int32_t> seq, lengths;  // [N]
  std::vector<float> q, k, v;              // [N, Hq, D], [sequences, capacity, Hkv, D] x2
};

Problem make_problem(const std::vector<std::int32_t>& lengths, std::int64_t Hq, std::int64_t Hkv, std::int64_t D,
                     std::uint64_t seed, bool reversed_rows) {
  Problem p;
  p.s.rows = static_cast<std::int64_t>(lengths.size());
  p.s.capacity = *std::max_element(lengths.begin(), lengths.end()) + 3;  // rows past a length are never read
  p.s.heads = Hq;
  p.s.kv_heads = Hkv;
  p.s.head_dim = D;
  p.s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  p.sequences = p.s.rows + 1;  // one cache sequence no row reads
  p.lengths = lengths;
  for (std::int64_t n = 0; n < p.s.rows; ++n)
    p.seq.push_back(static_cast<std::int32_t>(reversed_rows ? p.sequences - 1 - n : n));
  p.q = uniform(static_cast<std::size_t>(p.s.rows * Hq * D), seed);
  p.k = uniform(static_cast<std::size_t>(p.sequences * p.s.capacity * Hkv * D), seed);
  p.v = uniform(static_cast<std::size_t>(p.sequences * p.s.capacity * Hkv * D), seed);
  return p;
}

std::vector<double> reference(const Problem& p) {
  const auto& s = p.s;
  const std::int64_t D = s.head_dim, group = s.heads / s.kv_heads;
  std::vector<double> out(p.q.size(), 0.0);
  for (std::int64_t n = 0; n < s.rows; ++n)
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const std::int64_t len = p.lengths[static_cast<std::size_t>(n)];
      const std::int64_t base = p.seq[static_cast<std::size_t>(n)] * s.capacity * s.kv_heads * D + (h / group) * D;
      std::vector<double> w(static_cast<std::size_t>(len));
      double max = -INFINITY, sum = 0;
      for (std::int64_t j = 0; j < len; ++j) {
        double dot = 0;
        for (std::int64_t d = 0; d < D; ++d)
          dot += static_cast<double>(p.q[static_cast<std::size_t>((n * s.heads + h) * D + d)]) *
                 p.k[static_cast<std::size_t>(base + j * s.kv_heads * D + d)];
        w[static_cast<std::size_t>(j)] = dot * s.scale;
        max = std::max(max, dot * s.scale);
      }
      for (double& e : w) sum += (e = std::exp(e - max));
      for (std::int64_t j = 0; j < len; ++j)
        for (std::int64_t d = 0; d < D; ++d)
          out[static_cast<std::size_t>((n * s.heads + h) * D + d)] +=
              w[static_cast<std::size_t>(j)] / sum * p.v[static_cast<std::size_t>(base + j * s.kv_heads * D + d)];
    }
  return out;
}

std::vector<float> run(CpuBackend& cpu, const Problem& p) {
  std::vector<float> out(p.q.size(), -7.0f);  // garbage: every element must be written
  cpu.attention_decode(p.s, p.q.data(), p.k.data(), p.v.data(), p.seq.data(), p.lengths.data(), out.data());
  return out;
}

// Max abs error against the reference, checked against kTol * max(1, max |want|).
void check_close(const std::string& name, const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double err = 0, scale = 1;
  std::size_t worst = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!(e <= err)) err = e, worst = i;
  }
  INFO(name << ": max abs err " << err << " at " << worst << ": " << got[worst] << " vs " << want[worst]);
  CHECK(err <= kTol * scale);
}

}  // namespace

TEST_CASE("attention_decode: matches a float64 reference across lengths, GQA ratios and head dims") {
  CpuBackend cpu(2);
  const std::vector<std::int32_t> lengths{1, 2, 7, 33, 130};
  for (const std::int64_t D : {16, 64})
    for (const std::int64_t ratio : {1, 2, 4})
      for (const bool reversed : {false, true}) {
        const std::int64_t Hkv = 2, Hq = Hkv * ratio;
        const std::string name = "D=" + std::to_string(D) + " Hq/Hkv=" + std::to_string(ratio) +
                                 (reversed ? " rows reversed" : "");
        CAPTURE(name);
        const Problem p = make_problem(lengths, Hq, Hkv, D, 100 + static_cast<std::uint64_t>(D + ratio), reversed);
        check_close(name, run(cpu, p), reference(p));
      }
}

TEST_CASE("attention_decode: length 1 returns the value row, length 0 returns zeros") {
  CpuBackend cpu(1);
  Problem p = make_problem({1, 1}, 4, 2, 16, 5, false);
  p.lengths = {1, 0};
  const std::vector<float> out = run(cpu, p);
  const std::int64_t D = 16, Hq = 4;
  for (std::int64_t h = 0; h < Hq; ++h)
    for (std::int64_t d = 0; d < D; ++d) {
      // softmax over one key is exactly 1: exp(0) / exp(0).
      CHECK(out[static_cast<std::size_t>(h * D + d)] == p.v[static_cast<std::size_t>((h / 2) * D + d)]);
      CHECK(out[static_cast<std::size_t>((Hq + h) * D + d)] == 0.0f);
    }
}

TEST_CASE("attention_decode: is bit-identical for any thread count") {
  const Problem p = make_problem({3, 64, 17, 90}, 8, 2, 64, 9, true);
  CpuBackend one(1), two(2);
  const std::vector<float> a = run(one, p), b = run(two, p);
  CHECK(std::equal(a.begin(), a.end(), b.begin()));
}

TEST_CASE("attention_decode: the last query of a causal document agrees with the flash kernel") {
  // Prefill computes the prompt with flash attention and decode continues from its cache: for
  // the same keys both compute one softmax row, in a different summation order (online,
  // tiled against one pass), so they agree within fp32 rounding, not bitwise.
  CpuBackend cpu(2);
  for (const std::int32_t len : {1, 5, 40, 129}) {
    CAPTURE(len);
    const std::int64_t Hq = 4, Hkv = 2, D = 64;
    std::uint64_t state = static_cast<std::uint64_t>(len);
    const std::vector<float> q = uniform(static_cast<std::size_t>(len * Hq * D), state);
    const std::vector<float> k = uniform(static_cast<std::size_t>(len * Hkv * D), state);
    const std::vector<float> v = uniform(static_cast<std::size_t>(len * Hkv * D), state);
    AttentionShape s;
    s.tokens = len;
    s.docs = 1;
    s.max_seqlen = len;
    s.heads = Hq;
    s.kv_heads = Hkv;
    s.head_dim = D;
    s.causal = true;
    s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
    const std::vector<std::int32_t> cu{0, len};
    std::vector<float> out(q.size()), lse(static_cast<std::size_t>(Hq * len));
    cpu.attention_forward(AttentionImpl::flash, s, cu.data(), cu.data(), q.data(), k.data(), v.data(), out.data(),
                          lse.data(), nullptr);

    DecodeAttentionShape ds{1, len, Hq, Hkv, D, s.scale};
    const std::int32_t length = len;
    std::vector<float> dec(static_cast<std::size_t>(Hq * D));
    cpu.attention_decode(ds, q.data() + (len - 1) * Hq * D, k.data(), v.data(), nullptr, &length, dec.data());
    double err = 0;
    for (std::size_t i = 0; i < dec.size(); ++i)
      err = std::max(err, std::abs(static_cast<double>(dec[i]) - out[static_cast<std::size_t>((len - 1) * Hq * D) + i]));
    CHECK(err <= kTol);
  }
}
