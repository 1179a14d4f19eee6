# CUDA is compiled whenever nvcc exists (LLMLAB_CUDA=AUTO), so machines without a GPU still
# compile every kernel; LLMLAB_HAVE_CUDA tells the library which device code is linked in.
set(LLMLAB_HAVE_CUDA OFF)
if(NOT LLMLAB_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(_llmlab_nvcc nvcc PATHS /usr/local/cuda/bin)
    if(_llmlab_nvcc)
      set(CMAKE_CUDA_COMPILER "${_llmlab_nvcc}")
    endif()
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # One architecture keeps CI's compile time short; Hopper (H100/H200) is what GPU checks
    # run on, as sm_90a: wgmma and setmaxnreg (the sm90 flash kernel) exist only in the
    # arch-specific target, whose code runs on compute capability 9.0 alone. Override with e.g.
    # -DCMAKE_CUDA_ARCHITECTURES="80;90a"; without a 90a entry the sm90 kernel is left out.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90a)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(LLMLAB_HAVE_CUDA ON)
  elseif(LLMLAB_CUDA STREQUAL "ON")
    message(FATAL_ERROR "LLMLAB_CUDA=ON but no nvcc was found")
  endif()
endif()
message(STATUS "llmlab: CUDA backend ${LLMLAB_HAVE_CUDA}")

# NCCL, for the communicator over device buffers: looked for whenever CUDA is on, beside the
# toolkit first (NVIDIA's packages put nccl.h and libnccl there), then the system paths; like
# CUDA it is compiled on machines without a GPU so CI sees every line. LLMLAB_HAVE_NCCL tells
# lib/ whether lib/ops/cuda/nccl_communicator.cu is built.
set(LLMLAB_NCCL "AUTO" CACHE STRING "Build the NCCL communicator when CUDA is on: AUTO (when found), ON, OFF")
set_property(CACHE LLMLAB_NCCL PROPERTY STRINGS AUTO ON OFF)
set(LLMLAB_HAVE_NCCL OFF)
if(LLMLAB_HAVE_CUDA AND NOT LLMLAB_NCCL STREQUAL "OFF")
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(LLMLAB_HAVE_NCCL ON)
  elseif(LLMLAB_NCCL STREQUAL "ON")
    message(FATAL_ERROR "LLMLAB_NCCL=ON but nccl.h or libnccl was not found (set NCCL_INCLUDE_DIR and NCCL_LIBRARY)")
  endif()
endif()
if(LLMLAB_HAVE_NCCL)
  message(STATUS "llmlab: NCCL ON (${NCCL_LIBRARY})")
else()
  message(STATUS "llmlab: NCCL OFF")
endif()
