// bench-attn's library: the sweep's cases and FLOP convention, varlen document lengths (drawn
// and from a shard), the sampled float64 reference (agrees with the kernels, catches a wrong
// element), and a whole sweep's rows.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "bench/attention_case.hpp"
#include "bench/attention_reference.hpp"
#include "bench/attention_runner.hpp"
#include "bench/attention_sweep.hpp"
#include "data/shard/shard_writer.hpp"
#include "test_shard_support.hpp"

using namespace llmlab;

namespace {

AttentionBenchSettings small_settings() {
  AttentionBenchSettings s;
  s.seq_lens = {64, 256};
  s.tokens = 512;
  s.heads = 4;
  s.kv_heads = 2;
  s.head_dims = {32};
  s.repeats = 1;
  s.warmup = 0;
  s.threads = 2;
  s.rotate_bytes = 1;
  return s;
}

// Row boundaries r * seq_len must be document boundaries: no document spans two rows.
bool rows_are_whole(const AttentionCase& c) {
  for (std::int64_t r = 0; r <= c.batch; ++r)
    if (!std::binary_search(c.cu_seqlens.begin(), c.cu_seqlens.end(), static_cast<std::int32_t>(r * c.seq_len)))
      return false;
  return true;
}

}  // namespace

TEST_CASE("bench attention cases keep tokens per batch constant and count FlashAttention FLOPs") {
  AttentionBenchSettings s = small_settings();
  s.causal = {true, false};
  s.layouts = {BenchLayout::dense, BenchLayout::varlen};
  const std::vector<AttentionCase> cases = attention_cases(s);
  REQUIRE(cases.size() == 8);  // 2 masks x 2 layouts x 2 lengths
  for (const AttentionCase& c : cases) {
    CAPTURE(c.label());
    CHECK(c.batch == 512 / c.seq_len);
    CHECK(c.tokens() == 512);
    CHECK(rows_are_whole(c));
    CHECK(c.kv_heads == 2);
    for (std::int64_t i = 0; i < c.docs(); ++i) CHECK(c.cu_seqlens[i + 1] > c.cu_seqlens[i]);
    if (c.layout == BenchLayout::dense) {
      CHECK(c.docs() == c.batch);
      const auto full = static_cast<double>(4 * c.seq_len * c.seq_len * 4 * 32 * c.batch);
      CHECK(c.forward_flops() == doctest::Approx(c.causal ? full / 2 : full));
      CHECK(c.flops(BenchMode::bwd) == doctest::Approx(2.5 * c.forward_flops()));
      CHECK(c.flops(BenchMode::fwd_bwd) == doctest::Approx(3.5 * c.forward_flops()));
    } else {
      CHECK(c.docs() > c.batch);  // lognormal lengths, median seq_len / 8
    }
  }
}

TEST_CASE("bench attention: equal varlen lengths pack 4 documents of seq_len / 4 a row") {
  AttentionBenchSettings s = small_settings();
  s.layouts = {BenchLayout::varlen};
  s.doc_lengths = "equal";
  s.seq_lens = {256, 130};  // 130: lengths 32, 33, 32, 33
  for (const AttentionCase& c : attention_cases(s)) {
    CAPTURE(c.label());
    CHECK(rows_are_whole(c));
    CHECK(c.docs() == 4 * c.batch);
    CHECK(c.max_doc_len() == (c.seq_len + 3) / 4);
    for (std::int64_t i = 0; i < c.docs(); ++i) CHECK(c.cu_seqlens[i + 1] - c.cu_seqlens[i] >= c.seq_len / 4);
    // The work of dense rows of the documents' length (exactly so when 4 divides seq_len).
    if (c.seq_len % 4 == 0) {
      AttentionCase dense = c;
      dense.cu_seqlens.clear();
      for (std::int64_t i = 0; i <= c.docs(); ++i) dense.cu_seqlens.push_back(static_cast<std::int32_t>(i * c.seq_len / 4));
      CHECK(c.forward_flops() == doctest::Approx(dense.forward_flops()));
    }
  }
}

TEST_CASE("bench attention takes varlen document lengths from a pack-data shard") {
  test::ScratchDir dir("bench-shard");
  const std::string path = dir.path("rows.bin");
  {
    ShardWriter w(path, 64, 256, "byte");
    for (std::uint32_t len : {10u, 50u, 3u}) {
      PackedRow row;
      row.tokens.assign(len, 7);
      row.loss_mask.assign(len, 1);
      row.docs.push_back({len, 0});
      w.add(row);
    }
    w.finish();
  }
  // Lengths 10, 50, 3, 10, 50, ... dealt into 2 rows of 40: a document that does not fit is cut.
  CHECK(varlen_cu_seqlens(path, 40, 2, 0) == std::vector<std::int32_t>{0, 10, 40, 43, 53, 80});
  CHECK_THROWS_AS(varlen_cu_seqlens(dir.path("missing.bin"), 40, 2, 0), InputError);
}

TEST_CASE("bench attention reference agrees with the CPU naive kernel at its samples") {
  AttentionBenchSettings s = small_settings();
  s.layouts = {BenchLayout::varlen};
  for (bool causal : {true, false}) {
    s.causal = {causal};
    const AttentionCase c = attention_cases(s).back();  // seq_len 256
    const AttentionInputs in = attention_inputs(c, BenchDtype::fp32, 3);
    const AttentionReference ref(c, in, 3);
    CHECK(ref.rows() >= 48);
    CHECK(ref.columns() >= 8);
    auto runner = make_cpu_attention_runner(AttentionImpl::naive, 2);
    runner->load(c, in, 1);
    AttentionOutputs out = runner->results();
    const AttentionError f = ref.forward_error(out), b = ref.backward_error(out);
    CHECK(f.finite);
    CHECK(f.compared == ref.rows() * 32);
    CHECK(f.max_abs < 1e-6);
    CHECK(b.max_abs < 1e-5);
    CHECK(b.compared == ref.rows() * 32 + 2 * ref.columns() * 32);

    // The last token of the last document (head Hq - 1) is always sampled; so is the last key
    // of the longest document: changing them must show as exactly that much error.
    const std::size_t last_out = out.out.size() - 1;
    out.out[last_out] += 0.25f;
    CHECK(ref.forward_error(out).max_abs == doctest::Approx(0.25).epsilon(1e-3));
    for (float& e : out.dk) e += 0.125f;  // every column wrong
    CHECK(ref.backward_error(out).max_abs == doctest::Approx(0.125).epsilon(1e-2));
    out.dq[0] = NAN;
    CHECK_FALSE(ref.backward_error(out).finite);
  }
}

TEST_CASE("bench attention sweep measures every implementation and mode and applies the error rule") {
  AttentionBenchSettings s = small_settings();
  s.modes = {BenchMode::fwd, BenchMode::bwd, BenchMode::fwd_bwd};
  const std::vector<AttentionRow> rows = run_attention_sweep(s, {});
  REQUIRE(rows.size() == 2 * 2 * 3);  // cases x impls x modes
  for (const AttentionRow& r : rows) {
    CAPTURE(r.impl);
    CAPTURE(r.shape.label());
    CHECK(r.skipped.empty());
    CHECK(r.ms > 0);
    CHECK(r.tflops > 0);
    CHECK(r.checked);
    CHECK(r.error_ok);
    CHECK(r.memory_bytes > 0);
    if (r.impl == "flash") {
      CHECK(r.naive_err > 0);
      CHECK(r.speedup > 0);
    }
  }
  // Naive's memory grows with s^2 (its probabilities); flash's with s.
  auto memory = [&](const char* impl, std::int64_t seq_len) {
    for (const AttentionRow& r : rows)
      if (r.impl == impl && r.shape.seq_len == seq_len && r.mode == BenchMode::fwd) return r.memory_bytes;
    return std::uint64_t{0};
  };
  CHECK(memory("flash", 256) == memory("flash", 64));
  // 4 heads x (2 rows x 256^2 - 8 rows x 64^2) more fp32 probabilities.
  CHECK(memory("naive", 256) - memory("naive", 64) == 4 * 4 * (2 * 256 * 256 - 8 * 64 * 64));

  s.max_naive_bytes = 1024;  // too little for any naive probabilities
  for (const AttentionRow& r : run_attention_sweep(s, {}))
    if (r.impl == "naive") CHECK(r.skipped.find("probabilities need") != std::string::npos);

  s.kv_heads = 3;
  CHECK_THROWS_AS(run_attention_sweep(s, {}), InputError);
  s.kv_heads = 2;
  s.dtype = BenchDtype::bf16;
  CHECK_THROWS_AS(run_attention_sweep(s, {}), InputError);
}
