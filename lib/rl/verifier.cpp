// Verifiable rewards: exact, numeric and regex-extracted comparison of a response with a
// reference answer, with the PCRE2 pattern compiled once and match data made per call.
#include "rl/verifier.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/text.hpp"

namespace llmlab {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Length of the number -?\d+(\.\d+)?([eE][-+]?\d+)? starting at s[i] (greedy), 0 when none.
std::size_t number_length(std::string_view s, std::size_t i) {
  std::size_t j = i;
  if (j < s.size() && s[j] == '-') ++j;
  const std::size_t int_begin = j;
  while (j < s.size() && is_digit(s[j])) ++j;
  if (j == int_begin) return 0;
  if (j + 1 < s.size() && s[j] == '.' && is_digit(s[j + 1])) {
    j += 2;
    while (j < s.size() && is_digit(s[j])) ++j;
  }
  if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
    std::size_t k = j + 1;
    if (k < s.size() && (s[k] == '-' || s[k] == '+')) ++k;
    if (k < s.size() && is_digit(s[k])) {
      while (k < s.size() && is_digit(s[k])) ++k;
      j = k;
    }
  }
  return j - i;
}

// The last number in `s` when scanning left to right for non-overlapping leftmost matches, as a
// regex engine's global search would find them.
bool last_number(std::string_view s, std::string& out) {
  bool found = false;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t n = number_length(s, i);
    if (n == 0) {
      ++i;
      continue;
    }
    out.assign(s.substr(i, n));
    found = true;
    i += n;
  }
  return found;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

struct MatchDataFree {
  void operator()(pcre2_match_data* d) const { pcre2_match_data_free(d); }
};

// -?\d+ that fits an int64.
bool parse_integer(std::string_view text, std::int64_t& value) {
  text = trimmed(text);
  const std::size_t digits_from = !text.empty() && text[0] == '-' ? 1 : 0;
  if (text.size() == digits_from) return false;
  for (std::size_t i = digits_from; i < text.size(); ++i)
    if (!is_digit(text[i])) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

bool parse_number(std::string_view text, double& value) {
  text = trimmed(text);
  if (text.empty() || number_length(text, 0) != text.size()) return false;
  // from_chars is locale-independent (strtod would read "0,5" under a German locale).
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size() && std::isfinite(value);
}

Verifier::Verifier(VerifierSettings settings) : settings_(std::move(settings)) {
  if (!(settings_.tolerance >= 0) || !std::isfinite(settings_.tolerance))
    throw InputError(SourceLoc{}, "task.tolerance",
                     fmt::format("must be a finite number >= 0, got {}", settings_.tolerance));
  if (settings_.kind == VerifierKind::regex && settings_.answer_regex.empty())
    throw InputError(SourceLoc{}, "task.answer_regex", "the regex verifier needs a pattern");
  if (settings_.answer_regex.empty()) return;

  int error = 0;
  PCRE2_SIZE offset = 0;
  const std::string& pattern = settings_.answer_regex;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &error, &offset,
                                   nullptr);
  if (code == nullptr)
    throw InputError(SourceLoc{}, "task.answer_regex",
                     fmt::format("regex '{}' does not compile at offset {}: {}", single_line(pattern), offset,
                                 pcre2_message(error)));
  code_.reset(code, [](pcre2_code* c) { pcre2_code_free(c); });
  // Without JIT (a platform PCRE2 lacks it for) pcre2_match interprets, with the same matches.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  std::uint32_t captures = 0;
  pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &captures);
  use_group_ = captures >= 1;
}

bool Verifier::extract(std::string_view response, std::string& out) const {
  if (!code_) return last_number(response, out);
  const std::unique_ptr<pcre2_match_data, MatchDataFree> data(
      pcre2_match_data_create_from_pattern(code_.get(), nullptr));
  if (!data) throw Error("verifier: out of memory for regex match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(response.data());
  const PCRE2_SIZE length = response.size();
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
  bool found = false;
  PCRE2_SIZE pos = 0;
  while (pos <= length) {
    const int rc = pcre2_match(code_.get(), subject, length, pos, 0, data.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    // A match or resource limit hit by some pathological response scores it as unanswered
    // rather than stopping a training run.
    if (rc < 0) return false;
    const PCRE2_SIZE begin = ov[0], end = ov[1];
    if (use_group_) {
      if (rc >= 2 && ov[2] != PCRE2_UNSET)
        out.assign(response.substr(ov[2], ov[3] - ov[2]));
      else
        out.clear();
    } else {
      out.assign(response.substr(begin, end - begin));
    }
    found = true;
    // An empty match only marks a position; the search resumes one byte further.
    pos = end > begin ? end : begin + 1;
  }
  return found;
}

Verdict Verifier::operator()(std::string_view response, std::string_view answer) const {
  Verdict v;
  switch (settings_.kind) {
    case VerifierKind::exact:
      v.extracted = true;
      v.answer.assign(trimmed(response));
      v.correct = v.answer == trimmed(answer);
      return v;
    case VerifierKind::regex: {
      std::string raw;
      v.extracted = extract(response, raw);
      if (!v.extracted) return v;
      v.answer.assign(trimmed(raw));
      v.correct = v.answer == trimmed(answer);
      return v;
    }
    case VerifierKind::numeric: {
      std::string raw;
      v.extracted = extract(response, raw);
      if (!v.extracted) return v;
      v.answer.assign(trimmed(raw));
      // Integers that fit 64 bits compare exactly: doubles cannot tell 18-digit neighbours apart.
      std::int64_t got_int = 0, want_int = 0;
      if (parse_integer(v.answer, got_int) && parse_integer(answer, want_int)) {
        // The unsigned difference is exact even for opposite signs (it is below 2^64).
        const auto g = static_cast<std::uint64_t>(got_int), w = static_cast<std::uint64_t>(want_int);
        const std::uint64_t diff = got_int > want_int ? g - w : w - g;
        const double want_abs = std::fabs(static_cast<double>(want_int));
        v.correct = diff == 0 || static_cast<double>(diff) <= settings_.tolerance * std::fmax(1.0, want_abs);
        return v;
      }
      double got = 0, want = 0;
      // A reference that is not a number was rejected by validate_answers at load time.
      if (!parse_number(v.answer, got) || !parse_number(answer, want)) return v;
      v.correct = std::fabs(got - want) <= settings_.tolerance * std::fmax(1.0, std::fabs(want));
      return v;
    }
  }
  return v;
}

Verdict verify(const VerifierSettings& s, std::string_view response, std::string_view answer) {
  return Verifier(s)(response, answer);
}

void validate_answers(const VerifierSettings& s, const std::vector<Problem>& problems, const std::string& source) {
  if (s.kind != VerifierKind::numeric) return;
  for (const Problem& p : problems) {
    double value = 0;
    if (!parse_number(p.answer, value))
      throw InputError(SourceLoc{source, 0, 0}, "answer",
                       fmt::format("problem '{}': reference answer '{}' is not a number, which the numeric "
                                   "verifier needs",
                                   single_line(p.id), single_line(p.answer)));
  }
}

const char* verifier_name(VerifierKind k) {
  switch (k) {
    case VerifierKind::exact:
      return "exact";
    case VerifierKind::numeric:
      return "numeric";
    case VerifierKind::regex:
      return "regex";
  }
  return "?";
}

}  // namespace llmlab
