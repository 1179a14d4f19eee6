// Names of bench-attn's settings enums, as they are written in recipes and reports.
#include "spec/bench_settings.hpp"

namespace llmlab {

const char* bench_mode_name(BenchMode m) {
  switch (m) {
    case BenchMode::fwd: return "fwd";
    case BenchMode::bwd: return "bwd";
    case BenchMode::fwd_bwd: return "fwd_bwd";
  }
  return "?";
}

const char* bench_layout_name(BenchLayout l) { return l == BenchLayout::dense ? "dense" : "varlen"; }

const char* bench_dtype_name(BenchDtype d) {
  switch (d) {
    case BenchDtype::automatic: return "auto";
    case BenchDtype::fp32: return "fp32";
    case BenchDtype::bf16: return "bf16";
    case BenchDtype::fp16: return "fp16";
  }
  return "?";
}

const char* bench_flash_kernel_name(BenchFlashKernel k) {
  switch (k) {
    case BenchFlashKernel::automatic: return "auto";
    case BenchFlashKernel::sm80: return "sm80";
    case BenchFlashKernel::sm90: return "sm90";
  }
  return "?";
}

}  // namespace llmlab
