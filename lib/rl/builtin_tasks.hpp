// Generated problems for RL experiments without data: short additions of single digits with
// running sums, and column-wise multi-digit addition/subtraction, each with a difficulty knob
// and a worked (chain-of-thought) or answer-only solution for SFT warm-up. Texts are compact
// because a byte-level tokenizer makes every character a token.
#pragma once

#include <cstdint>
#include <vector>

#include "rl/problem.hpp"
#include "rl/verifier.hpp"

namespace llmlab {

// running_sum, difficulty d = number of single-digit terms (d >= 2):
//   prompt "3+1+4+1+5="  cot "3+1=4,4+4=8,8+1=9,9+5=14 #14"  direct "#14"
// arithmetic, difficulty d = digits of both operands (1 <= d <= 18), "a+b=" or "a-b=" with a >= b:
//   "47+85="  cot "7+5=12 c1,4+8+1=13 #132"   (column sums from the least significant digit,
//             " c1" where a carry goes on to the next column)
//   "52-17="  cot "12-7=5 b1,5-1-1=3 #35"     (a borrowed ten is written onto the digit,
//             " b1" where a borrow goes on, "-1" where one comes in)
enum class BuiltinTask { arithmetic, running_sum };
enum class SolutionStyle { cot, direct, mixed };  // what `solution` holds: worked steps, the answer only, or a seeded 50/50 mix

struct BuiltinTaskSettings {
  BuiltinTask task = BuiltinTask::running_sum;
  std::int64_t count = 1000;                            // problems generated
  std::int64_t min_difficulty = 2, max_difficulty = 4;  // inclusive; each problem's difficulty uniform in this range
  std::uint64_t seed = 0;
  SolutionStyle style = SolutionStyle::cot;
  // Fraction of solutions written with one wrong step (a running sum or the final answer off
  // by 1 or 2, the rest following from it): SFT data with mistakes, the kind of weak start
  // RL with verifiable rewards cleans up. Problems and answers do not change with it.
  double solution_noise = 0;
};

// Deterministic in the seed on every platform (splitmix64 draws only). The style does not change
// the problems: a seed gives the same prompts and answers in every style. Throws InputError for
// a count below 1 or a difficulty range outside the task's limits.
std::vector<Problem> make_builtin_problems(const BuiltinTaskSettings& s);

const char* builtin_task_name(BuiltinTask t);        // "arithmetic" | "running_sum"
const char* solution_style_name(SolutionStyle s);    // "cot" | "direct" | "mixed"

// The verifier settings the built-in tasks are meant to be scored with: numeric on the final
// answer marked "#<number>" (the last such mark in the response), tolerance 0: exact integers.
VerifierSettings builtin_verifier();

}  // namespace llmlab
