// Emulated-build shim for the CUDA toolkit header of the same name: see cuda_emulation.hpp.
#pragma once
#include "cuda_emulation.hpp"
