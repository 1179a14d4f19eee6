// CUDA device properties for `hardware.memory: auto`.
#include <cuda_runtime.h>

#include <string>

#include "core/error.hpp"
#include "ops/cuda/cuda_runtime_info.hpp"

namespace llmlab {

std::uint64_t cuda_device_memory_bytes(int device) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0)
    throw Error(std::string("hardware.memory: auto found no CUDA device (") +
                (err != cudaSuccess ? cudaGetErrorString(err) : "0 devices") + "); write the size, e.g. 80GiB");
  if (device >= count) throw Error("CUDA device " + std::to_string(device) + " does not exist");
  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) throw Error(std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(err));
  return static_cast<std::uint64_t>(prop.totalGlobalMem);
}

}  // namespace llmlab
