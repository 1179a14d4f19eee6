// train as a library function (apps/train forwards argv; tests call it in-process).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace llmlab {

// Exit codes: 0 done, 1 runtime failure, 2 bad input, 130 interrupted (checkpoint saved).
int train_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace llmlab
