// Verifiable rewards: decides whether a policy's response reaches a problem's reference answer,
// by exact text, by number (within a relative tolerance) or by a regex-extracted answer. The
// pattern is compiled once per run; scoring is then safe from several threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rl/problem.hpp"

struct pcre2_real_code_8;  // PCRE2's compiled pattern (pcre2.h needs macros set before it)

namespace llmlab {

enum class VerifierKind { exact, numeric, regex };

struct VerifierSettings {
  VerifierKind kind = VerifierKind::exact;
  // numeric: correct when |x - answer| <= tolerance * max(1, |answer|); integers that fit 64
  // bits are compared exactly (tolerance 0 then means equal values, at any size).
  double tolerance = 1e-6;
  // regex: PCRE2 pattern; the LAST match in the response is the answer, capture group 1 if the
  // pattern has one (empty when group 1 did not take part in that match), else the whole match.
  // numeric: when set, extracts before parsing; when empty, numeric takes the last number.
  // Matching is byte-wise (no UTF mode): a byte-level policy may emit invalid UTF-8.
  std::string answer_regex;
};

struct Verdict {
  bool correct = false;
  bool extracted = false;  // an answer was found in the response (exact: always)
  std::string answer;      // what was extracted and compared (trimmed)
};

// Numbers the numeric verifier reads: -?\d+(\.\d+)?([eE][-+]?\d+)?, the whole (trimmed) text.
// False for anything else, including "+1", ".5", "1,234", "inf", "nan" and out-of-range values.
bool parse_number(std::string_view text, double& value);

class Verifier {
 public:
  // Compiles answer_regex when set. Throws InputError with key "task.answer_regex" for a pattern
  // PCRE2 rejects (PCRE2's message and offset) or a regex verifier without a pattern, and with
  // key "task.tolerance" for a negative or non-finite tolerance.
  explicit Verifier(VerifierSettings settings);

  // Safe from several threads at once (match data per call).
  Verdict operator()(std::string_view response, std::string_view answer) const;

  const VerifierSettings& settings() const { return settings_; }

 private:
  // The last match's answer text, or false when the pattern does not match.
  bool extract(std::string_view response, std::string& out) const;

  VerifierSettings settings_;
  std::shared_ptr<pcre2_real_code_8> code_;  // null without answer_regex; shared by copies
  bool use_group_ = false;                   // the pattern has a capture group
};

// One-off scoring (compiles the pattern each call; prefer a Verifier in loops).
Verdict verify(const VerifierSettings& s, std::string_view response, std::string_view answer);

// Throws InputError naming `source` and the first problem whose reference answer the verifier
// cannot compare against (numeric: not a number as parse_number reads it). Call at load time.
void validate_answers(const VerifierSettings& s, const std::vector<Problem>& problems, const std::string& source);

const char* verifier_name(VerifierKind k);  // "exact" | "numeric" | "regex"

}  // namespace llmlab
