// bench-attn's sweep: cases from settings, varlen document lengths, seeded inputs.
#include "bench/attention_case.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/half_float.hpp"
#include "core/random.hpp"
#include "data/shard/shard_reader.hpp"

namespace llmlab {

std::int64_t AttentionCase::max_doc_len() const {
  std::int64_t m = 0;
  for (std::size_t i = 0; i + 1 < cu_seqlens.size(); ++i) m = std::max<std::int64_t>(m, cu_seqlens[i + 1] - cu_seqlens[i]);
  return m;
}

std::int64_t AttentionCase::prob_elements() const {
  std::int64_t squares = 0;
  for (std::size_t i = 0; i + 1 < cu_seqlens.size(); ++i) {
    const std::int64_t len = cu_seqlens[i + 1] - cu_seqlens[i];
    squares += len * len;
  }
  return heads * squares;
}

double AttentionCase::forward_flops() const {
  const double flops = 4.0 * static_cast<double>(prob_elements()) * static_cast<double>(head_dim);
  return causal ? flops / 2 : flops;
}

double AttentionCase::flops(BenchMode mode) const {
  switch (mode) {
    case BenchMode::fwd: return forward_flops();
    case BenchMode::bwd: return 2.5 * forward_flops();
    case BenchMode::fwd_bwd: return 3.5 * forward_flops();
  }
  return 0;
}

std::string AttentionCase::label() const {
  return fmt::format("s={} b={} h={}/{} d={} {} {}", seq_len, batch, heads, kv_heads, head_dim,
                     causal ? "causal" : "full", bench_layout_name(layout));
}

namespace {

// A draw in (0, 1) and a standard normal one (Box-Muller), from splitmix64.
double unit(std::uint64_t& state) { return (static_cast<double>(splitmix64(state) >> 11) + 0.5) * 0x1p-53; }
double normal(std::uint64_t& state) {
  const double u1 = unit(state), u2 = unit(state);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Document lengths from a pack-data shard, in row order, every row's documents in turn.
std::vector<std::int64_t> shard_doc_lengths(const std::string& path) {
  const ShardReader reader(path);
  std::vector<std::int64_t> lengths;
  for (std::uint64_t r = 0; r < reader.rows(); ++r)
    for (const PackedDoc& d : reader.row(r).docs)
      if (d.length > 0) lengths.push_back(d.length);
  if (lengths.empty()) throw InputError(SourceLoc{path, 0, 0}, "bench.doc_lengths", "the shard holds no documents");
  return lengths;
}

}  // namespace

std::vector<std::int32_t> varlen_cu_seqlens(const std::string& source, std::int64_t seq_len, std::int64_t batch,
                                            std::uint64_t seed) {
  std::vector<std::int32_t> cu = {0};
  if (source == "equal") {  // 4 documents a row, lengths within one token of seq_len / 4
    for (std::int64_t row = 0; row < batch; ++row)
      for (std::int64_t d = 0; d < 4; ++d)
        cu.push_back(static_cast<std::int32_t>(row * seq_len + (d + 1) * seq_len / 4));
    return cu;
  }
  std::vector<std::int64_t> from_shard;
  if (source != "lognormal") from_shard = shard_doc_lengths(source);
  std::uint64_t state = seed ^ 0x5eed0f1e5ull;
  std::size_t next = 0;
  // Lognormal with median seq_len / 8 and sigma 1: most documents short, a long tail.
  auto draw = [&]() -> std::int64_t {
    if (!from_shard.empty()) return from_shard[next++ % from_shard.size()];
    const double len = static_cast<double>(seq_len) / 8 * std::exp(normal(state));
    return std::clamp<std::int64_t>(std::llround(len), 16, seq_len);
  };
  for (std::int64_t row = 0; row < batch; ++row) {
    std::int64_t left = seq_len;
    while (left > 0) {
      const std::int64_t len = std::min(draw(), left);
      cu.push_back(static_cast<std::int32_t>(cu.back() + len));
      left -= len;
    }
  }
  return cu;
}

std::vector<AttentionCase> attention_cases(const AttentionBenchSettings& s) {
  std::vector<AttentionCase> cases;
  for (std::int64_t d : s.head_dims)
    for (bool causal : s.causal)
      for (BenchLayout layout : s.layouts)
        for (std::int64_t seq_len : s.seq_lens) {
          AttentionCase c;
          c.seq_len = seq_len;
          c.batch = std::max<std::int64_t>(1, s.tokens / seq_len);
          c.head_dim = d;
          c.heads = s.heads;
          c.kv_heads = s.kv_heads > 0 ? s.kv_heads : s.heads;
          c.causal = causal;
          c.layout = layout;
          if (layout == BenchLayout::dense) {
            for (std::int64_t r = 0; r <= c.batch; ++r) c.cu_seqlens.push_back(static_cast<std::int32_t>(r * seq_len));
          } else {
            c.cu_seqlens = varlen_cu_seqlens(s.doc_lengths, seq_len, c.batch, s.seed + static_cast<std::uint64_t>(seq_len));
          }
          cases.push_back(std::move(c));
        }
  return cases;
}

namespace {

std::vector<float> uniform_values(std::size_t n, std::uint64_t& state, BenchDtype dtype) {
  std::vector<float> x(n);
  for (float& e : x) {
    const auto value = static_cast<float>(unit(state) * 2 - 1);
    if (dtype == BenchDtype::bf16) e = bf16_to_float(float_to_bf16(value));
    else if (dtype == BenchDtype::fp16) e = fp16_to_float(float_to_fp16(value));
    else e = value;
  }
  return x;
}

}  // namespace

AttentionInputs attention_inputs(const AttentionCase& c, BenchDtype dtype, std::uint64_t seed) {
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  const auto q_size = static_cast<std::size_t>(c.tokens() * c.heads * c.head_dim);
  const auto kv_size = static_cast<std::size_t>(c.tokens() * c.kv_heads * c.head_dim);
  AttentionInputs in;
  in.q = uniform_values(q_size, state, dtype);
  in.k = uniform_values(kv_size, state, dtype);
  in.v = uniform_values(kv_size, state, dtype);
  in.dout = uniform_values(q_size, state, dtype);
  return in;
}

}  // namespace llmlab
