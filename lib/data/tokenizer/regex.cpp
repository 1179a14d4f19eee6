// PCRE2 (UTF + UCP + JIT) behind the pre-tokenizer's Split: pattern translation from
// Oniguruma, compilation, and the Isolated split loop with per-thread match state.
#include "data/tokenizer/regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include "data/tokenizer/unicode_text.hpp"

namespace llmlab::tok {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

// Match data and a JIT stack per thread: encode() runs on many threads over one tokenizer.
// The GPT-2, Llama 3 and Qwen patterns repeat single characters and need almost no stack, but
// a pattern repeating a group (`(?:\s|x)+`) takes stack per repetition: PCRE2's default 32 KiB
// fails at ~10,000 characters; 64 MiB (reserved, used only as needed) handles a million.
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);

  MatchState() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchState(const MatchState&) = delete;
  MatchState& operator=(const MatchState&) = delete;
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

// "\x{a}-\x{b}..." for use inside a PCRE2 character class.
std::string class_members(std::span<const CodePointRange> ranges) {
  std::string out;
  for (const CodePointRange& r : ranges) {
    out += fmt::format("\\x{{{:x}}}", static_cast<std::uint32_t>(r.first));
    if (r.last != r.first) out += fmt::format("-\\x{{{:x}}}", static_cast<std::uint32_t>(r.last));
  }
  return out;
}

}  // namespace

std::string onig_to_pcre2(std::string_view pattern) {
  // The class body that stands for each rewritten escape; `\S` is handled apart (negated).
  const auto body = [](char escape) -> std::string {
    switch (escape) {
      case 's':
        return std::string(whitespace_class_body());
      case 'L':
        return "\\p{L}" + class_members(letters_since_unicode14());
      case 'N':
        return "\\p{N}" + class_members(numbers_since_unicode14());
      default:
        return {};
    }
  };
  std::string out;
  bool in_class = false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const std::string_view rest = pattern.substr(i + 1);
      char escape = 0;
      if (rest.starts_with("s")) escape = 's';
      if (rest.starts_with("p{L}")) escape = 'L';
      if (rest.starts_with("p{N}")) escape = 'N';
      if (escape != 0) {
        if (!in_class) out += '[';
        out += body(escape);
        if (!in_class) out += ']';
        i += escape == 's' ? 1 : 4;
      } else if (rest.starts_with("S") && !in_class) {
        out += fmt::format("[^{}]", whitespace_class_body());
        i += 1;
      } else {
        out += c;
        out += pattern[++i];
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(std::string_view pattern, const SourceLoc& where, const std::string& key) {
  const std::string translated = onig_to_pcre2(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), PCRE2_UTF | PCRE2_UCP,
                        &error, &offset, nullptr);
  if (code_ == nullptr)
    throw InputError(where, key, fmt::format("regex '{}' does not compile: {}", pattern, pcre2_message(error)));
  // Without JIT (a platform PCRE2 lacks it for) the interpreter gives the same matches, slower.
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(code_); }

Regex::Regex(Regex&& other) noexcept : code_(other.code_), jit_(other.jit_) { other.code_ = nullptr; }

void Regex::split(std::string_view text, Span piece, SpanVisitor visit) const {
  MatchState& state = match_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + piece.begin);
  const std::size_t len = piece.end - piece.begin;
  PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
  std::size_t pos = 0, last = 0;
  while (pos <= len) {
    // The text was validated once by encode(); pieces start and end on character boundaries.
    const int rc = jit_ ? pcre2_jit_match(code_, subject, len, pos, PCRE2_NO_UTF_CHECK, state.data, state.context)
                        : pcre2_match(code_, subject, len, pos, PCRE2_NO_UTF_CHECK, state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    // rc == 0 means the ovector had no room for capture groups; the whole match is still there.
    if (rc < 0)
      throw Error(fmt::format("pre-tokenizer regex failed on a {}-byte stretch of text: {}", len, pcre2_message(rc)));
    const std::size_t start = ovector[0], end = ovector[1];
    if (start > last) visit({piece.begin + last, piece.begin + start});
    if (end > start) visit({piece.begin + start, piece.begin + end});
    last = end;
    if (end > start) {
      pos = end;
    } else {
      if (end == len) break;
      std::size_t char_len = 0;
      decode_utf8(text, piece.begin + end, char_len);
      pos = end + char_len;
    }
  }
  if (last < len) visit({piece.begin + last, piece.end});
}

}  // namespace llmlab::tok
