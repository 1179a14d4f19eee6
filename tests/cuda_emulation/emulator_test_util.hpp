// Helpers of the emulator's own tests (test_emulator*.cpp): reading a device buffer back, and
// the message of the error a launch throws.
#pragma once

#include <exception>
#include <string>
#include <vector>

#include "ops/cuda/device_memory.hpp"

namespace llmlab::emu_test {

template <typename T>
std::vector<T> read_back(const DeviceBuffer& b, std::size_t n) {
  std::vector<T> x(n);
  copy_to_host(x.data(), b.get(), n * sizeof(T));
  return x;
}

// The what() of the exception fn throws; empty when it throws none.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace llmlab::emu_test
