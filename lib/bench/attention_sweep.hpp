// bench-attn's measurement loop: every case of the sweep, every implementation, every mode,
// timed (median of repeats), its memory counted and its error against the float64 reference
// measured; one row per measurement.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/attention_case.hpp"
#include "core/error.hpp"

namespace llmlab {

struct AttentionRow {
  std::string impl, device, dtype;
  AttentionCase shape;
  BenchMode mode = BenchMode::fwd;
  bool deterministic = true;      // bitwise reproducible results (only CUDA flash with atomics is not)
  std::string kernel;             // the kernel variant where an implementation has several ("sm90")
  std::string skipped;            // why it was not measured ("" = measured)
  double ms = 0, ms_min = 0, ms_max = 0;  // median, fastest, slowest of the repeats
  int repeats = 0;
  double tflops = 0;              // FlashAttention's FLOP convention / median time
  std::uint64_t memory_bytes = 0; // what the implementation holds during the pass
  bool checked = false;           // error measured against the float64 reference
  double max_abs_err = 0, rel_err = 0;
  std::int64_t checked_rows = 0, checked_columns = 0;
  double naive_err = 0;           // the naive kernel's max_abs_err on the same case and mode (0: none)
  bool error_ok = true;           // finite, and at most 2x naive's error (plus a floor; see the .cpp)
  double speedup = 0;             // naive's median time / this one's (0: no naive row)
};

struct SweepHooks {
  std::function<void(const std::string& line)> progress;  // one line per case, as it starts
  std::function<void(const AttentionRow& row)> row;       // every row, as it is measured
};

// Where a bench.* key was set, for errors (a recipe's Recipe::locate).
using KeyLocator = std::function<SourceLoc(const std::string& key)>;

// Throws InputError, located by `locate`, for settings that cannot run: a dtype the device
// lacks, kv_heads not dividing heads.
void validate_bench_settings(const AttentionBenchSettings& s, const KeyLocator& locate);

// Runs the sweep (validating first). Throws InputError for a head dim the CUDA flash kernel
// lacks, Error for a device that fails.
std::vector<AttentionRow> run_attention_sweep(const AttentionBenchSettings& s, const SweepHooks& hooks,
                                              const KeyLocator& locate = {});

// "cpu (2 threads)" or the CUDA device's name.
std::string bench_device_label(const AttentionBenchSettings& s);
// The storage type the settings resolve to: fp32 on cpu, bf16 on cuda unless given.
BenchDtype resolved_dtype(const AttentionBenchSettings& s);

}  // namespace llmlab
