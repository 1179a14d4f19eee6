// One attention implementation on one device as bench-attn drives it: it owns the device
// buffers of a case (inputs, outputs, saved tensors, workspace), times a pass, and hands its
// results back for the error check. CPU (fp32, ops/cpu) and CUDA (bf16/fp16, kernels/attention)
// runners implement it; the sweep never knows which it drives.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/attention_case.hpp"
#include "bench/attention_reference.hpp"

namespace llmlab {

class AttentionRunner {
 public:
  virtual ~AttentionRunner() = default;

  // Loads a case: `copies` sets of forward inputs to rotate through (copy 0 = `in`, the
  // others perturbed), plus everything the backward needs. Releases the previous case.
  virtual void load(const AttentionCase& c, const AttentionInputs& in, int copies) = 0;
  // Runs `warmup` untimed then `repeats` timed passes; seconds per timed pass. A backward
  // pass reads the forward's saved tensors, computed once before timing.
  virtual std::vector<double> time(BenchMode mode, int warmup, int repeats) = 0;
  // Results of the last forward and backward on copy 0 (runs them if not yet run).
  virtual AttentionOutputs results() = 0;
  // Bytes the implementation holds during a pass of `mode`: inputs, outputs, saved tensors
  // (lse, or the naive kernel's probabilities) and workspace, one input copy counted.
  virtual std::uint64_t memory_bytes(BenchMode mode) const = 0;
  virtual void release() = 0;
};

// CPU: ops/cpu's flash or naive kernels in fp32, `threads` OpenMP threads (0 = all cores).
std::unique_ptr<AttentionRunner> make_cpu_attention_runner(AttentionImpl impl, int threads);
// CUDA: kernels/attention in bf16 or fp16. Throws Error when this build has no CUDA or no
// device is present.
std::unique_ptr<AttentionRunner> make_cuda_attention_runner(AttentionImpl impl, BenchDtype dtype);
// "NVIDIA H200 (sm_90, 132 SMs)"; throws like make_cuda_attention_runner.
std::string cuda_attention_device_name();

}  // namespace llmlab
