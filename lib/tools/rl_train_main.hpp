// rl-train as a library function (apps/rl-train forwards argv; tests call it in-process).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace llmlab {

// `rl-train RECIPE [key=value ...]` trains; `rl-train tasks|merge|sft-set ...` are the data and
// long2short tools. Exit codes: 0 done, 1 runtime failure, 2 bad input, 130 interrupted.
int rl_train_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace llmlab
