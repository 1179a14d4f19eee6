// bench-attn's settings: which attention implementations to time on which device, over which
// sweep of shapes. Filled by the recipe loader from `bench.*` keys (bench-attn also accepts
// them undotted on its command line: `bench-attn seq_lens=1024,8192 mode=fwd`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "spec/settings.hpp"

namespace llmlab {

enum class BenchMode { fwd, bwd, fwd_bwd };  // forward, backward alone, forward + backward
enum class BenchLayout { dense, varlen };     // one document per row, or packed documents
enum class BenchDtype { automatic, fp32, bf16, fp16 };  // automatic: fp32 on cpu, bf16 on cuda
// CUDA flash forward kernel: sm80 (mma.sync, cp.async), sm90 (wgmma, TMA, warp specialisation;
// Hopper only); automatic = sm90 where the device has it.
enum class BenchFlashKernel { automatic, sm80, sm90 };
// How the CUDA sm90 flash backward (atomic mode) adds dQ: fp32 atomics from the MMA threads, or
// bulk reductions of rows staged in shared memory (cuda::DqReduction).
enum class BenchDqReduction { atomics, bulk };

struct AttentionBenchSettings {
  Device device = Device::cpu;
  std::vector<AttentionImpl> impls = {AttentionImpl::naive, AttentionImpl::flash};
  std::vector<std::int64_t> seq_lens = {512, 1024, 2048, 4096, 8192};  // packed row length
  std::vector<std::int64_t> head_dims = {64};
  std::int64_t heads = 4;                 // query heads
  std::int64_t kv_heads = 0;              // 0 = heads (no grouping)
  std::int64_t tokens = 8192;             // tokens per batch: batch = max(1, tokens / seq_len)
  std::vector<bool> causal = {true};
  std::vector<BenchMode> modes = {BenchMode::fwd, BenchMode::bwd};
  std::vector<BenchLayout> layouts = {BenchLayout::dense};
  // varlen document lengths: "lognormal" (median seq_len/8, clipped to [16, seq_len]) or a
  // packed shard (pack-data output) whose rows' document lengths are reused.
  std::string doc_lengths = "lognormal";
  BenchDtype dtype = BenchDtype::automatic;
  std::int64_t warmup = 1;
  std::int64_t repeats = 5;
  std::int64_t threads = 0;               // cpu threads; 0 = all cores
  bool check = true;                      // measure error against a float64 reference
  std::uint64_t seed = 0;
  std::uint64_t rotate_bytes = 256ull << 20;  // forward inputs rotate through copies this large in all
  std::uint64_t max_naive_bytes = 0;      // skip naive when its probabilities exceed this; 0 = half the device memory
  // CUDA flash backward without atomics, bitwise reproducible (FlashAttention's
  // deterministic=True); the CPU kernels and cuBLAS's naive baseline always are.
  bool deterministic = false;
  BenchFlashKernel flash_kernel = BenchFlashKernel::automatic;
  BenchDqReduction dq_reduction = BenchDqReduction::atomics;
};

const char* bench_mode_name(BenchMode m);
const char* bench_layout_name(BenchLayout l);
const char* bench_dtype_name(BenchDtype d);
const char* bench_flash_kernel_name(BenchFlashKernel k);

}  // namespace llmlab
