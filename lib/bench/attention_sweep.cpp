// The bench-attn sweep: load a case into each implementation's runner, check its results
// against the float64 reference, time each mode, and compare with the naive kernel.
#include "bench/attention_sweep.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>

#include "bench/attention_reference.hpp"
#include "bench/attention_runner.hpp"
#include "core/error.hpp"
#include "core/units.hpp"
#include "ops/device_info.hpp"

namespace llmlab {

namespace {

// The error rule (FlashAttention's tests): an implementation may err at most twice as much as
// the naive kernel in the same precision, plus a floor relative to the reference's magnitude
// for errors so small that their ratio is noise (fp32: both ~1e-7).
double error_floor(BenchDtype dtype) { return dtype == BenchDtype::fp32 ? 1e-6 : 1e-4; }

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const std::size_t n = x.size();
  return n == 0 ? 0 : n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

}  // namespace

void validate_bench_settings(const AttentionBenchSettings& s, const KeyLocator& locate) {
  const auto at = [&](const std::string& key) { return locate ? locate(key) : SourceLoc{}; };
  const std::int64_t kv = s.kv_heads > 0 ? s.kv_heads : s.heads;
  if (s.heads % kv != 0)
    throw InputError(at("bench.kv_heads"), "bench.kv_heads", fmt::format("must divide bench.heads ({} does not divide {})", kv, s.heads));
  const BenchDtype dtype = resolved_dtype(s);
  if (s.device == Device::cpu && dtype != BenchDtype::fp32)
    throw InputError(at("bench.dtype"), "bench.dtype",
                     fmt::format("{} needs bench.device=cuda; the CPU kernels compute in fp32", bench_dtype_name(dtype)));
  if (s.device == Device::cuda && dtype == BenchDtype::fp32)
    throw InputError(at("bench.dtype"), "bench.dtype", "fp32 on cuda: the CUDA kernels store bf16 or fp16 (fp32 accumulation)");
  if (s.device == Device::cpu && s.dq_reduction == BenchDqReduction::bulk)
    throw InputError(at("bench.dq_reduction"), "bench.dq_reduction",
                     "bulk needs bench.device=cuda (the sm90 flash backward); the CPU kernels sum dQ in place");
}

namespace {

// Forward-input copies so that the copies together exceed `rotate_bytes` (at most 16).
int input_copies(const AttentionCase& c, std::uint64_t rotate_bytes, BenchDtype dtype) {
  const std::uint64_t element = dtype == BenchDtype::fp32 ? 4 : 2;
  const auto one = static_cast<std::uint64_t>(c.tokens() * (c.heads + 2 * c.kv_heads) * c.head_dim) * element;
  if (one == 0) return 1;
  return static_cast<int>(std::clamp<std::uint64_t>((rotate_bytes + one - 1) / one, 1, 16));
}

}  // namespace

BenchDtype resolved_dtype(const AttentionBenchSettings& s) {
  if (s.dtype != BenchDtype::automatic) return s.dtype;
  return s.device == Device::cpu ? BenchDtype::fp32 : BenchDtype::bf16;
}

std::string bench_device_label(const AttentionBenchSettings& s) {
  if (s.device == Device::cuda) return cuda_attention_device_name();
  const int threads = s.threads > 0 ? static_cast<int>(s.threads) : omp_get_max_threads();
  return fmt::format("cpu ({} thread{})", threads, threads == 1 ? "" : "s");
}

std::vector<AttentionRow> run_attention_sweep(const AttentionBenchSettings& s, const SweepHooks& hooks,
                                              const KeyLocator& locate) {
  validate_bench_settings(s, locate);
  const BenchDtype dtype = resolved_dtype(s);
  const std::string device = bench_device_label(s);
  const std::vector<AttentionCase> cases = attention_cases(s);
  const std::uint64_t naive_budget =
      s.max_naive_bytes > 0 ? s.max_naive_bytes : device_memory_bytes(s.device) / 2;
  // Naive first, so that the others' rows can be compared with it.
  std::vector<AttentionImpl> impls = s.impls;
  std::stable_sort(impls.begin(), impls.end(), [](AttentionImpl a, AttentionImpl b) {
    return a == AttentionImpl::naive && b != AttentionImpl::naive;
  });
  impls.erase(std::unique(impls.begin(), impls.end()), impls.end());

  std::vector<AttentionRow> rows;
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t ci = 0; ci < cases.size(); ++ci) {
    const AttentionCase& c = cases[ci];
    if (hooks.progress) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      hooks.progress(fmt::format("[{}/{}] {} ({} docs, {} tokens; {:.1f} s so far)", ci + 1, cases.size(), c.label(),
                                 c.docs(), c.tokens(), elapsed));
    }
    const AttentionInputs inputs = attention_inputs(c, dtype, s.seed);
    std::unique_ptr<AttentionReference> reference;
    if (s.check) reference = std::make_unique<AttentionReference>(c, inputs, s.seed);
    std::vector<AttentionRow> naive_rows;  // of this case, by mode
    for (AttentionImpl impl : impls) {
      auto row_template = [&](BenchMode mode) {
        AttentionRow r;
        r.impl = attention_name(impl);
        r.device = device;
        r.dtype = bench_dtype_name(dtype);
        r.shape = c;
        r.mode = mode;
        r.deterministic = !(s.device == Device::cuda && impl == AttentionImpl::flash) || s.deterministic;
        return r;
      };
      // Probabilities and their gradient (fp32 scratch on the CPU) must fit.
      const auto naive_bytes = static_cast<std::uint64_t>(c.prob_elements()) * 8;
      if (impl == AttentionImpl::naive && naive_bytes > naive_budget) {
        for (BenchMode mode : s.modes) {
          AttentionRow r = row_template(mode);
          r.skipped = fmt::format("probabilities need {} (bench.max_naive_bytes {})", format_bytes(static_cast<double>(naive_bytes)),
                                  format_bytes(static_cast<double>(naive_budget)));
          if (hooks.row) hooks.row(r);
          rows.push_back(r);
        }
        continue;
      }
      std::unique_ptr<AttentionRunner> runner = s.device == Device::cpu
                                                    ? make_cpu_attention_runner(impl, static_cast<int>(s.threads))
                                                    : make_cuda_attention_runner(impl, dtype, s.deterministic,
                                                                                 s.flash_kernel, s.dq_reduction);
      runner->load(c, inputs, input_copies(c, s.rotate_bytes, dtype));
      AttentionError fwd_err, bwd_err;
      if (reference) {
        const AttentionOutputs out = runner->results();
        fwd_err = reference->forward_error(out);
        bwd_err = reference->backward_error(out);
      }
      for (BenchMode mode : s.modes) {
        AttentionRow r = row_template(mode);
        r.kernel = runner->kernel();
        const std::vector<double> seconds = runner->time(mode, static_cast<int>(s.warmup), static_cast<int>(s.repeats));
        r.ms = median(seconds) * 1e3;
        r.ms_min = *std::min_element(seconds.begin(), seconds.end()) * 1e3;
        r.ms_max = *std::max_element(seconds.begin(), seconds.end()) * 1e3;
        r.repeats = static_cast<int>(seconds.size());
        r.tflops = r.ms > 0 ? c.flops(mode) / (r.ms * 1e-3) * 1e-12 : 0;
        r.memory_bytes = runner->memory_bytes(mode);
        if (reference) {
          AttentionError e = mode == BenchMode::fwd ? fwd_err : bwd_err;
          if (mode == BenchMode::fwd_bwd) e.merge(fwd_err);
          r.checked = true;
          r.max_abs_err = e.max_abs;
          r.rel_err = e.relative();
          r.checked_rows = reference->rows();
          r.checked_columns = mode == BenchMode::fwd ? 0 : reference->columns();
          r.error_ok = e.finite;
          for (const AttentionRow& n : naive_rows)
            if (n.mode == mode && n.checked) {
              r.naive_err = n.max_abs_err;
              r.error_ok = e.finite && e.max_abs <= 2 * n.max_abs_err + error_floor(dtype) * e.max_ref;
            }
        }
        for (const AttentionRow& n : naive_rows)
          if (n.mode == mode && n.skipped.empty() && r.ms > 0) r.speedup = n.ms / r.ms;
        if (impl == AttentionImpl::naive) naive_rows.push_back(r);
        if (hooks.row) hooks.row(r);
        rows.push_back(r);
      }
      runner->release();
    }
  }
  return rows;
}

}  // namespace llmlab
