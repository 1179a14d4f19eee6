// Kernel launches written as LLMLAB_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...):
// nvcc's triple-chevron syntax in CUDA builds, and in the emulated build (tests/cuda_emulation,
// LLMLAB_CUDA_EMULATION), where the host compiler compiles the same sources, a call into the
// CPU emulator. The kernel must be a single token (name a template instance with `auto` first).
#pragma once

#ifdef LLMLAB_CUDA_EMULATION
#define LLMLAB_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  ::llmlab::emu::launch(kernel, grid, block, shared_bytes, stream)
#else
#define LLMLAB_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#endif
