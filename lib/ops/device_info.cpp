// Device memory queries; the CUDA one lives in cuda/device_info.cu.
#include "ops/device_info.hpp"

#include <unistd.h>

#include "core/error.hpp"
#include "ops/cuda/cuda_runtime_info.hpp"

namespace llmlab {

bool built_with_cuda() {
#ifdef LLMLAB_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

std::uint64_t device_memory_bytes(Device device) {
  if (device == Device::cpu) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) throw Error("cannot read the host's memory size (sysconf)");
    return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
  }
#ifdef LLMLAB_HAVE_CUDA
  return cuda_device_memory_bytes(0);
#else
  throw Error("hardware.memory: auto with device cuda needs the CUDA backend, and this build has none "
              "(nvcc was not found when it was configured); write the size, e.g. hardware.memory=80GiB");
#endif
}

}  // namespace llmlab
