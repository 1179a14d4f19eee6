// bench-attn's CUDA path end to end on the emulated device: the sweep drives the CUDA runner
// (lib/bench/attention_runner_cuda.cpp, compiled into this test with LLMLAB_HAVE_CUDA) through
// uploads, both kernels, every mode, event timing, downloads and the float64 reference's error
// rule in bf16 and fp16; the deterministic backward is marked so in the rows, and the flash
// kernel family that ran (bench.flash_kernel: sm90 by default here, sm80 on request) too, and
// bench.dq_reduction: bulk runs (and is refused without the sm90 backward's atomic mode).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "bench/attention_sweep.hpp"

using namespace llmlab;

namespace {

AttentionBenchSettings emulated_settings() {
  AttentionBenchSettings s;
  s.device = Device::cuda;
  s.seq_lens = {96, 160};
  s.head_dims = {64};
  s.heads = 2;
  s.kv_heads = 1;
  s.tokens = 160;
  s.causal = {true};
  s.modes = {BenchMode::fwd, BenchMode::bwd, BenchMode::fwd_bwd};
  s.layouts = {BenchLayout::dense, BenchLayout::varlen};
  s.warmup = 0;
  s.repeats = 1;
  s.rotate_bytes = 0;
  s.max_naive_bytes = 1ull << 30;  // not "half the device": that asks lib/ops/cuda, not compiled here
  return s;
}

}  // namespace

TEST_CASE("bench-attn on the emulated CUDA device: every impl and mode measured within the error rule") {
  for (const BenchDtype dtype : {BenchDtype::bf16, BenchDtype::fp16})
    for (const bool deterministic : {false, true}) {
      AttentionBenchSettings s = emulated_settings();
      s.dtype = dtype;
      s.deterministic = deterministic;
      // bench.flash_kernel: auto is the sm90 kernels on the emulated 9.0 device; sm80 asked for.
      s.flash_kernel = dtype == BenchDtype::bf16 ? BenchFlashKernel::automatic : BenchFlashKernel::sm80;
      const std::string kernel = dtype == BenchDtype::bf16 ? "sm90" : "sm80";
      const std::vector<AttentionRow> rows = run_attention_sweep(s, {});
      REQUIRE(rows.size() == 2 * 2 * 2 * 3);  // lengths x layouts x impls x modes
      for (const AttentionRow& r : rows) {
        CAPTURE(r.impl);
        CAPTURE(r.dtype);
        CAPTURE(r.shape.label());
        CHECK(r.device.find("llmlab CUDA emulator") != std::string::npos);
        CHECK(r.skipped.empty());
        CHECK(r.ms > 0);
        CHECK(r.checked);
        CHECK(r.error_ok);
        CHECK(r.max_abs_err < 0.05);  // 16-bit storage: rounding of O(1) values
        CHECK(r.memory_bytes > 0);
        CHECK(r.deterministic == (r.impl == "naive" || deterministic));
        CHECK(r.kernel == (r.impl == "flash" ? kernel : std::string()));
        if (r.impl == "flash") CHECK(r.naive_err > 0);
      }
    }
}

TEST_CASE("bench-attn on the emulated CUDA device: bench.dq_reduction: bulk runs the sm90 backward's bulk-dQ mode") {
  AttentionBenchSettings s = emulated_settings();
  s.impls = {AttentionImpl::flash};
  s.modes = {BenchMode::bwd};
  s.dq_reduction = BenchDqReduction::bulk;
  const std::vector<AttentionRow> rows = run_attention_sweep(s, {});
  REQUIRE(rows.size() == 2 * 2);  // lengths x layouts
  for (const AttentionRow& r : rows) {
    CAPTURE(r.shape.label());
    CHECK(r.kernel == "sm90+bulk-dq");
    CHECK(r.checked);
    CHECK(r.error_ok);
    CHECK_FALSE(r.deterministic);
  }
  // Bulk reductions exist only in the sm90 backward's atomic mode.
  s.flash_kernel = BenchFlashKernel::sm80;
  CHECK_THROWS_WITH_AS(run_attention_sweep(s, {}), doctest::Contains("bench.dq_reduction"), InputError);
  s.flash_kernel = BenchFlashKernel::automatic;
  s.deterministic = true;
  CHECK_THROWS_WITH_AS(run_attention_sweep(s, {}), doctest::Contains("bench.deterministic is true"), InputError);
}

TEST_CASE("bench-attn on the emulated CUDA device: head dims the flash kernel lacks are an input error") {
  AttentionBenchSettings s = emulated_settings();
  s.head_dims = {96};
  CHECK_THROWS_AS(run_attention_sweep(s, {}), InputError);
}
