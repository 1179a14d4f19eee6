// Host API of llmlab's CUDA attention kernels (kernels/attention/*.cu): FlashAttention-2-class
// tiled online softmax (tensor-core MMA, asynchronous copies) and a naive baseline (cuBLAS
// GEMMs + a softmax kernel, materialised probabilities), forward and backward, bf16 or fp16
// storage with fp32 accumulation, varlen via cu_seqlens, causal or not, grouped-query.
// Plain C++: no CUDA type appears here, so lib/ (compiled by the host compiler) can call it.
// Defined only in builds with CUDA (LLMLAB_HAVE_CUDA). Errors throw llmlab::Error naming the
// CUDA/cuBLAS call; shapes the kernels are not compiled for throw Error too.
//
// Layout: as the CPU backend (ops/backend.hpp AttentionShape): q, out, dout, dq [T, Hq, D];
// k, v, dk, dv [T, Hkv, D]; row-major, contiguous; lse [Hq, T] fp32. Tokens outside every
// document (padding after cu_seqlens[docs]) get out = 0, lse = 0 and zero gradients.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ops/backend.hpp"

namespace llmlab::cuda {

enum class Storage { bf16, fp16 };  // element type of q, k, v, out, dout, dq, dk, dv

// Device pointers of one attention call (host pointer only where named so).
struct AttentionTensors {
  Storage storage = Storage::bf16;
  const std::int32_t* cu_seqlens = nullptr;       // device, docs + 1 entries
  const std::int32_t* cu_seqlens_host = nullptr;  // host copy of the same values
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;  // forward writes it (flash; naive too), flash backward reads it
  // backward only
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
};

// ---- flash (llmlab's kernel) ----------------------------------------------------------------
// Whether the flash kernels are compiled for this shape (head_dim 64 or 128; any Hq/Hkv ratio).
bool flash_supported(const AttentionShape& s);
// Device scratch each call needs (bytes, 256-aligned sizes); the caller allocates it once.
// The deterministic backward needs less (no fp32 dQ accumulator); the default size serves both.
std::size_t flash_forward_workspace_bytes(const AttentionShape& s);
std::size_t flash_backward_workspace_bytes(const AttentionShape& s, bool deterministic = false);
// Asynchronous on `stream` (a cudaStream_t; nullptr = the legacy default stream).
// Backward modes. Default: the key-block kernel adds each query block's dQ contribution with
// fp32 atomics, so dq's rounding depends on the order the CTAs run in and may differ in its last
// bits from run to run (dk, dv are written once and do not). deterministic = true: guarantees
// dq, dk and dv bitwise identical run to run for the same inputs and shape (same device and
// build), and dk, dv bitwise equal to the default mode's. It costs recompute: dq comes from a
// second pass, one CTA per query block summing dS K over the key blocks in a fixed order, which
// recomputes S = Q K^T, P and dP = dO V^T; 7 matrix products per tile instead of 5, two exp2 per
// score instead of one, K and V read once per query block; in exchange no atomics and no fp32
// dQ workspace. Not timed yet (written without a GPU).
// Forward kernels: sm80 is the FlashAttention-2-class kernel (mma.sync, cp.async; any device of
// compute capability 8.0+); sm90 the FlashAttention-3-style one (wgmma, TMA, warp specialisation;
// compute capability 9.x only). Both write the same out and lse (the backward reads either);
// automatic picks sm90 where the device has it. The backward likewise (sm90: flash_backward_sm90.cu's
// main kernel between the same preprocess and dq conversion kernels; deterministic: that kernel
// without dQ, then flash_backward_dq_sm90.cu's dQ pass). dk and dv of the two modes are bitwise
// equal within one kernel family, not across families.
enum class FlashKernel { automatic, sm80, sm90 };
FlashKernel resolve_flash_kernel(FlashKernel requested);  // automatic -> what runs on device 0
const char* flash_kernel_name(FlashKernel kernel);       // "auto", "sm80", "sm90"
// How the sm90 backward's default (atomic) mode adds each step's dQ into its fp32 accumulator:
// atomics, FlashAttention-2's way (each MMA thread adds its accumulator pairs), or bulk,
// FlashAttention-3's (each warp stages its 16 rows in shared memory and one cp.reduce.async.bulk
// a row adds them, so the MMA warps issue 1 instruction a row instead of D/8 atomics a thread).
// Both leave dq's rounding to the order the CTAs run in. bulk with the sm80 kernel or the
// deterministic mode is an error.
enum class DqReduction { atomics, bulk };
void flash_forward(const AttentionShape& s, const AttentionTensors& t, void* workspace, void* stream,
                   FlashKernel kernel = FlashKernel::automatic);
void flash_backward(const AttentionShape& s, const AttentionTensors& t, void* workspace, void* stream,
                    bool deterministic = false, FlashKernel kernel = FlashKernel::automatic,
                    DqReduction reduction = DqReduction::atomics);

// ---- naive (cuBLAS + softmax kernel) ----------------------------------------------------------
// Forward materialises the probabilities of every (document, head), len x len each, in the
// storage type, into `saved` (naive_saved_bytes); backward reads them and needs
// naive_backward_workspace_bytes of scratch (dP/dS in fp32 or storage type, the kernel decides).
std::size_t naive_saved_bytes(const AttentionShape& s, const std::int32_t* cu_seqlens_host);
std::size_t naive_backward_workspace_bytes(const AttentionShape& s, const std::int32_t* cu_seqlens_host);
void naive_forward(const AttentionShape& s, const AttentionTensors& t, void* saved, void* stream);
void naive_backward(const AttentionShape& s, const AttentionTensors& t, const void* saved, void* workspace,
                    void* stream);

// ---- timing and device state ----------------------------------------------------------------
// Runs fn `warmup` times, then `repeats` times each bracketed by CUDA events recorded on
// `stream` (nullptr: the legacy default stream); returns each repeat's device time in
// milliseconds, in run order. Throws Error when the work fails.
std::vector<double> time_on_device_ms(const std::function<void()>& fn, int warmup, int repeats, void* stream);
// Waits for the device; throws Error carrying the first error of earlier asynchronous work.
void synchronize();
// "NVIDIA H200 (sm_90, 132 SMs)" for device 0.
std::string device_name();
// Multiprocessors of the current device (the grid of the persistent sm90 forward).
int multiprocessor_count();

}  // namespace llmlab::cuda
