// memory-plan as a library function: apps/memory-plan only forwards argv, tests call it
// in-process with string streams.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace llmlab {

// Returns the process exit code: 0 success (with --fit: something fits), 1 nothing fits or a
// runtime failure, 2 bad input. Every error is one line on `err`.
int memory_plan_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace llmlab
