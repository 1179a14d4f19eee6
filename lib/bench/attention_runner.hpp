// One attention implementation on one device as bench-attn drives it: it owns the device
// buffers of a case (inputs, outputs, saved tensors, workspace), times a pass, and hands its
// results back for the error check. The sequencing (input copies, which pass reads which
// copy, when a backward needs a fresh forward) lives here once; CPU (fp32, ops/cpu) and CUDA
// (bf16/fp16, kernels/attention) runners only move data and launch kernels.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/attention_case.hpp"
#include "bench/attention_reference.hpp"
#include "ops/backend.hpp"

namespace llmlab {

class AttentionRunner {
 public:
  virtual ~AttentionRunner() = default;

  // Loads a case: `copies` sets of forward inputs to rotate through (copy 0 = `in`, the
  // others the same values shifted by one element per copy: distinct memory, similar data),
  // plus everything the backward needs. Releases the previous case.
  void load(const AttentionCase& c, const AttentionInputs& in, int copies);
  // Runs `warmup` untimed then `repeats` timed passes; seconds per timed pass. Forward passes
  // rotate through the input copies; a backward reads copy 0's forward, run before timing.
  std::vector<double> time(BenchMode mode, int warmup, int repeats);
  // Results of a forward and backward on copy 0 (run now if the last ones were not).
  AttentionOutputs results();
  void release();
  // Bytes the implementation holds during a pass of `mode`: inputs, outputs, saved tensors
  // (lse, or the naive kernel's probabilities) and workspace, one input copy counted.
  virtual std::uint64_t memory_bytes(BenchMode mode) const = 0;
  // Which kernel variant runs, where an implementation has several ("sm90"); "" otherwise.
  virtual std::string kernel() const { return ""; }

 protected:
  // Allocates the case's buffers and stores the input copies.
  virtual void upload(const AttentionCase& c, const AttentionShape& s, const std::vector<AttentionInputs>& copies) = 0;
  virtual void forward(int copy) = 0;
  virtual void backward() = 0;  // on copy 0's inputs and saved tensors
  // Seconds of each of `repeats` passes after `warmup` untimed ones (wall clock or device events).
  virtual std::vector<double> timed(const std::function<void()>& pass, int warmup, int repeats) = 0;
  virtual AttentionOutputs download() = 0;
  virtual void free_buffers() = 0;

 private:
  int copies_ = 0;
  bool forward_done_ = false, backward_done_ = false;  // copy 0's results are current
};

// The kernels' shape of a case: all its documents, scale 1/sqrt(head_dim).
AttentionShape attention_shape(const AttentionCase& c);

// CPU: ops/cpu's flash or naive kernels in fp32, `threads` OpenMP threads (0 = all cores).
std::unique_ptr<AttentionRunner> make_cpu_attention_runner(AttentionImpl impl, int threads);
// CUDA: kernels/attention in bf16 or fp16; `deterministic` picks flash's backward without
// atomics, `flash_kernel` its forward and backward kernel family, `dq_reduction` how the sm90
// backward adds dQ (kernel() says "sm90+bulk-dq" for bulk). Throws Error when this build has no
// CUDA or no device is present, InputError (bench.flash_kernel) for sm90 where it cannot run and
// (bench.dq_reduction) for bulk without the sm90 backward's atomic mode.
std::unique_ptr<AttentionRunner> make_cuda_attention_runner(AttentionImpl impl, BenchDtype dtype, bool deterministic,
                                                            BenchFlashKernel flash_kernel = BenchFlashKernel::automatic,
                                                            BenchDqReduction dq_reduction = BenchDqReduction::atomics);
// "NVIDIA H200 (sm_90, 132 SMs)"; throws like make_cuda_attention_runner.
std::string cuda_attention_device_name();

}  // namespace llmlab
