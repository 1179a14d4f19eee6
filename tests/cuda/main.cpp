// doctest's main for the CUDA kernel tests: without a CUDA device there is nothing to run, and
// the "SKIP: " line lets ctest (tests/cli/cuda_kernels.sh) report a skip rather than a pass.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "ops/cuda/device_memory.hpp"

int main(int argc, char** argv) {
  if (llmlab::cuda_device_count() == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 0;
  }
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
