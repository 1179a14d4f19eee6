// What the hardware a rank runs on offers, for settings written as `auto`.
#pragma once

#include <cstdint>

#include "spec/settings.hpp"

namespace llmlab {

// Total memory of the device: host RAM for cpu, device 0's global memory for cuda.
// Throws Error when the device is absent or this build has no CUDA backend.
std::uint64_t device_memory_bytes(Device device);

// Whether this build includes the CUDA backend (nvcc was found at configure time).
bool built_with_cuda();

}  // namespace llmlab
