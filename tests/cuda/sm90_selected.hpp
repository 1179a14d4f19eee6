// Whether the CUDA tests run the sm90 kernels: where the device has them (a Hopper GPU, or the
// emulator), unless LLMLAB_CUDA_TESTS_KERNELS=sm80 leaves them out. scripts/gpu-check.sh first
// proves the sm80-class kernels alone, so that an sm90 kernel that hangs on new hardware cannot
// take the sm80 results down with it.
#pragma once

#include <cstdlib>
#include <string>

#include "kernels/attention/attention_cuda.hpp"

namespace llmlab::test {

inline bool sm90_selected() {
  const char* only = std::getenv("LLMLAB_CUDA_TESTS_KERNELS");
  if (only && std::string(only) == "sm80") return false;
  return cuda::resolve_flash_kernel(cuda::FlashKernel::automatic) == cuda::FlashKernel::sm90;
}

}  // namespace llmlab::test
