// Device timing and state for benchmarks and tests: per-repeat CUDA-event timing on a stream,
// a synchronise that surfaces asynchronous errors, and the device's name.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "kernels/attention/attention_cuda.hpp"
#include "kernels/attention/flash_common.cuh"

namespace llmlab::cuda {

using flash::check_cuda;

std::vector<double> time_on_device_ms(const std::function<void()>& fn, int warmup, int repeats, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<cudaEvent_t> events(2 * static_cast<std::size_t>(repeats > 0 ? repeats : 0), nullptr);
  std::vector<double> ms;
  try {
    for (auto& e : events) check_cuda(cudaEventCreate(&e), "cudaEventCreate");
    for (int i = 0; i < repeats; ++i) {
      const auto j = 2 * static_cast<std::size_t>(i);
      check_cuda(cudaEventRecord(events[j], stream), "cudaEventRecord");
      fn();
      check_cuda(cudaEventRecord(events[j + 1], stream), "cudaEventRecord");
    }
    for (int i = 0; i < repeats; ++i) {
      const auto j = 2 * static_cast<std::size_t>(i);
      check_cuda(cudaEventSynchronize(events[j + 1]), "cudaEventSynchronize (timed work)");
      float elapsed = 0;
      check_cuda(cudaEventElapsedTime(&elapsed, events[j], events[j + 1]), "cudaEventElapsedTime");
      ms.push_back(static_cast<double>(elapsed));
    }
  } catch (...) {
    for (auto e : events)
      if (e) (void)cudaEventDestroy(e);
    throw;
  }
  for (auto e : events) check_cuda(cudaEventDestroy(e), "cudaEventDestroy");
  return ms;
}

int multiprocessor_count() {
  int device = 0, count = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute (multiprocessors)");
  return count;
}

void synchronize() { check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

std::string device_name() {
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs)";
}

}  // namespace llmlab::cuda
