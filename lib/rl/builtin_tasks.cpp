// Built-in RL tasks: seeded running-sum and column-arithmetic problems with worked solutions.
#include "rl/builtin_tasks.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/random.hpp"

namespace llmlab {

namespace {

// Operands up to 18 digits keep a + b below 2^63.
constexpr std::int64_t max_arithmetic_digits = 18;

// The mixed style and the mistakes draw from their own streams, so neither changes the problems.
constexpr std::uint64_t style_stream = 0x6A09E667F3BCC909ull;
constexpr std::uint64_t mistake_stream = 0xBB67AE8584CAA73Bull;

struct Generated {
  std::string prompt, answer, cot;
  std::string direct_answer;  // what an answer-only solution writes, when not the answer
};

// A wrong step, for SFT data with mistakes: step `at` (0-based) of a worked solution is off by
// `delta` and everything after it follows from the wrong value.
struct Mistake {
  std::int64_t at = -1, delta = 0;
};

Generated running_sum(std::uint64_t& state, std::int64_t terms, const Mistake& m) {
  Generated g;
  std::int64_t sum = 0, written = 0;  // the true sum and the one the solution carries
  for (std::int64_t k = 0; k < terms; ++k) {
    const auto t = static_cast<std::int64_t>(uniform_below(state, 10));
    g.prompt += fmt::format("{}{}", k == 0 ? "" : "+", t);
    if (k > 0) {
      std::int64_t next = written + t;
      if (m.at == k - 1) next = std::max<std::int64_t>(0, next + m.delta);
      g.cot += fmt::format("{}{}+{}={}", k == 1 ? "" : ",", written, t, next);
      written = next;
    } else {
      written = t;
    }
    sum += t;
  }
  g.prompt += '=';
  g.answer = std::to_string(sum);
  g.cot += " #" + std::to_string(written);
  if (m.at >= 0) g.direct_answer = std::to_string(std::max<std::int64_t>(0, sum + m.delta));
  return g;
}

std::int64_t digit(std::int64_t x, std::int64_t place) { return (x / place) % 10; }

Generated arithmetic(std::uint64_t& state, std::int64_t digits, const Mistake& m) {
  std::int64_t top = 1;  // 10^digits
  for (std::int64_t k = 0; k < digits; ++k) top *= 10;
  const std::int64_t low = digits == 1 ? 0 : top / 10;
  const auto span = static_cast<std::uint64_t>(top - low);
  std::int64_t a = low + static_cast<std::int64_t>(uniform_below(state, span));
  std::int64_t b = low + static_cast<std::int64_t>(uniform_below(state, span));
  const bool subtract = uniform_below(state, 2) == 1;
  if (subtract && a < b) std::swap(a, b);

  Generated g;
  g.prompt = fmt::format("{}{}{}=", a, subtract ? '-' : '+', b);
  g.answer = std::to_string(subtract ? a - b : a + b);
  std::int64_t place = 1, carry = 0;
  for (std::int64_t col = 0; col < digits; ++col, place *= 10) {
    const std::int64_t x = digit(a, place), y = digit(b, place);
    const bool last = col + 1 == digits;
    if (col > 0) g.cot += ',';
    if (!subtract) {
      const std::int64_t s = x + y + carry;
      g.cot += carry ? fmt::format("{}+{}+1={}", x, y, s) : fmt::format("{}+{}={}", x, y, s);
      carry = s >= 10 ? 1 : 0;
      if (carry && !last) g.cot += " c1";
    } else {
      const std::int64_t r = x - y - carry;
      const std::int64_t top_digit = r < 0 ? x + 10 : x;  // a borrowed ten is written onto x
      g.cot += fmt::format("{}-{}{}={}", top_digit, y, carry ? "-1" : "", r < 0 ? r + 10 : r);
      carry = r < 0 ? 1 : 0;
      if (carry) g.cot += " b1";  // never on the last column: a >= b
    }
  }
  // A mistake miswrites the final answer (the column steps stay right).
  const std::string written = m.at >= 0 ? std::to_string(std::max<std::int64_t>(0, std::stoll(g.answer) + m.delta)) : g.answer;
  g.cot += " #" + written;
  if (m.at >= 0) g.direct_answer = written;
  return g;
}

void check_range(const BuiltinTaskSettings& s, std::int64_t lowest, std::int64_t highest, const char* unit) {
  const char* task = builtin_task_name(s.task);
  if (s.count < 1) throw InputError(SourceLoc{}, "count", fmt::format("must be at least 1, got {}", s.count));
  if (s.min_difficulty < lowest)
    throw InputError(SourceLoc{}, "min_difficulty",
                     fmt::format("{} needs at least {} {}, got {}", task, lowest, unit, s.min_difficulty));
  if (s.max_difficulty > highest)
    throw InputError(SourceLoc{}, "max_difficulty",
                     fmt::format("{} allows at most {} {}, got {}", task, highest, unit, s.max_difficulty));
  if (s.max_difficulty < s.min_difficulty)
    throw InputError(SourceLoc{}, "max_difficulty",
                     fmt::format("{} is below min_difficulty {}", s.max_difficulty, s.min_difficulty));
}

}  // namespace

std::vector<Problem> make_builtin_problems(const BuiltinTaskSettings& s) {
  if (s.task == BuiltinTask::running_sum)
    check_range(s, 2, 1'000'000, "terms");  // a million single digits is already far past any use
  else
    check_range(s, 1, max_arithmetic_digits, "digits");

  std::vector<Problem> out;
  out.reserve(static_cast<std::size_t>(s.count));
  std::uint64_t state = s.seed;
  std::uint64_t style_state = s.seed ^ style_stream;
  std::uint64_t mistake_state = s.seed ^ mistake_stream;
  if (!(s.solution_noise >= 0 && s.solution_noise <= 1))
    throw InputError(SourceLoc{}, "solution_noise", fmt::format("must be in [0, 1], got {}", s.solution_noise));
  const auto levels = static_cast<std::uint64_t>(s.max_difficulty - s.min_difficulty + 1);
  for (std::int64_t i = 0; i < s.count; ++i) {
    const std::int64_t d = s.min_difficulty + static_cast<std::int64_t>(uniform_below(state, levels));
    // Three draws per problem whatever the noise, so a noise level never shifts the others.
    const double u = static_cast<double>(splitmix64(mistake_state) >> 11) * 0x1p-53;
    const std::uint64_t step = splitmix64(mistake_state), sign = splitmix64(mistake_state);
    Mistake m;
    if (u < s.solution_noise) {
      const std::int64_t steps = s.task == BuiltinTask::running_sum ? d - 1 : 1;
      m.at = static_cast<std::int64_t>(step % static_cast<std::uint64_t>(steps));
      m.delta = (sign & 1 ? 1 : -1) * (1 + static_cast<std::int64_t>((sign >> 1) % 2));
    }
    Generated g = s.task == BuiltinTask::running_sum ? running_sum(state, d, m) : arithmetic(state, d, m);
    const bool cot_draw = uniform_below(style_state, 2) == 0;
    const bool cot = s.style == SolutionStyle::cot || (s.style == SolutionStyle::mixed && cot_draw);
    Problem p;
    p.id = fmt::format("{}-{}", builtin_task_name(s.task), i);
    p.prompt = std::move(g.prompt);
    p.solution = cot ? std::move(g.cot) : "#" + (g.direct_answer.empty() ? g.answer : g.direct_answer);
    p.answer = std::move(g.answer);
    p.difficulty = static_cast<double>(d);
    out.push_back(std::move(p));
  }
  return out;
}

const char* builtin_task_name(BuiltinTask t) {
  switch (t) {
    case BuiltinTask::arithmetic:
      return "arithmetic";
    case BuiltinTask::running_sum:
      return "running_sum";
  }
  return "?";
}

const char* solution_style_name(SolutionStyle s) {
  switch (s) {
    case SolutionStyle::cot:
      return "cot";
    case SolutionStyle::direct:
      return "direct";
    case SolutionStyle::mixed:
      return "mixed";
  }
  return "?";
}

VerifierSettings builtin_verifier() {
  VerifierSettings v;
  v.kind = VerifierKind::numeric;
  v.answer_regex = "#(-?\\d+)";
  // Integer answers up to 19 digits: only the exact value scores (a relative tolerance would
  // accept an off-by-one sum of two 7-digit numbers).
  v.tolerance = 0;
  return v;
}

}  // namespace llmlab
