// CUDA runtime queries behind a CUDA-free interface (only .cu files see CUDA types).
#pragma once

#include <cstdint>

namespace llmlab {

// Global memory of `device`; throws Error naming the CUDA error when there is no usable GPU.
std::uint64_t cuda_device_memory_bytes(int device);

}  // namespace llmlab
