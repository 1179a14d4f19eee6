// bench-attn: times attention implementations side by side over a sweep of shapes and checks
// each against a float64 reference (`bench-attn [RECIPE] [key=value ...]`).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace llmlab {

// Exit codes: 0 success, 1 a failure or an implementation whose error broke the rule (at most
// 2x the naive kernel's), 2 bad input. Errors are one line on `err`.
int bench_attn_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace llmlab
