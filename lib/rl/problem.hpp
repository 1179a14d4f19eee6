// One RL prompt with its reference answer: what the policy continues, what a verifier scores the
// continuation against, and (for built-in tasks) a worked response usable as SFT data.
#pragma once

#include <string>

namespace llmlab {

struct Problem {
  std::string id;          // unique within a set ("line-12" for files without ids, "running_sum-37" for built-ins)
  std::string prompt;      // the exact text the policy continues
  std::string answer;      // the reference answer the verifier compares against
  double difficulty = 0;   // larger = harder; files without it: 0
  std::string solution;    // a worked response (built-ins only; for SFT data), may be empty
};

}  // namespace llmlab
