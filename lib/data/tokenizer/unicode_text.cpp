// UTF-8 validation and decoding, NFC through utf8proc, and the White_Space and \w classes.
#include "data/tokenizer/unicode_text.hpp"

#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.hpp"

namespace llmlab::tok {

namespace {

std::uint8_t byte_at(std::string_view s, std::size_t i) { return static_cast<std::uint8_t>(s[i]); }
bool continuation(std::uint8_t b, std::uint8_t lo = 0x80, std::uint8_t hi = 0xBF) { return b >= lo && b <= hi; }

// Length of the well-formed sequence at text[i] (Unicode Table 3-7), or 0 when ill-formed.
std::size_t sequence_length(std::string_view text, std::size_t i) {
  const std::uint8_t b0 = byte_at(text, i);
  const std::size_t left = text.size() - i;
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return left >= 2 && continuation(byte_at(text, i + 1)) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    // E0 excludes overlongs (second byte >= A0), ED excludes the surrogates (second <= 9F).
    const std::uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    return left >= 3 && continuation(byte_at(text, i + 1), lo, hi) && continuation(byte_at(text, i + 2)) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    // F0 excludes overlongs, F4 stops at U+10FFFF.
    const std::uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return left >= 4 && continuation(byte_at(text, i + 1), lo, hi) && continuation(byte_at(text, i + 2)) &&
                   continuation(byte_at(text, i + 3))
               ? 4
               : 0;
  }
  return 0;
}

}  // namespace

std::size_t find_invalid_utf8(std::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    // Eight ASCII bytes at a time: most training text is mostly ASCII.
    if (i + 8 <= n) {
      std::uint64_t word;
      std::memcpy(&word, text.data() + i, 8);
      if ((word & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    const std::size_t len = sequence_length(text, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

void require_utf8(std::string_view text) {
  const std::size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    throw InputError(fmt::format("text is not valid UTF-8 (byte 0x{:02x} at offset {})", byte_at(text, bad), bad));
}

char32_t decode_utf8(std::string_view text, std::size_t i, std::size_t& len) {
  const std::uint8_t b0 = byte_at(text, i);
  if (b0 < 0x80) {
    len = 1;
    return b0;
  }
  len = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t c = b0 & (0x7F >> len);
  for (std::size_t k = 1; k < len; ++k) c = (c << 6) | (byte_at(text, i + k) & 0x3F);
  return c;
}

char32_t decode_utf8_before(std::string_view text, std::size_t end, std::size_t& len) {
  std::size_t start = end - 1;
  while (start > 0 && (byte_at(text, start) & 0xC0) == 0x80) --start;
  return decode_utf8(text, start, len);
}

bool in_ranges(std::span<const CodePointRange> sorted, char32_t c) {
  const auto it = std::upper_bound(sorted.begin(), sorted.end(), c,
                                   [](char32_t value, const CodePointRange& r) { return value < r.first; });
  return it != sorted.begin() && c <= std::prev(it)->last;
}

namespace {

void append_utf8proc_nfc(std::string_view text, std::string& out) {
  if (text.empty()) return;
  std::uint8_t* normalized = nullptr;
  const utf8proc_ssize_t len =
      utf8proc_map(reinterpret_cast<const std::uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &normalized, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  const std::unique_ptr<std::uint8_t, decltype(&std::free)> owner(normalized, &std::free);
  if (len < 0) throw Error(fmt::format("NFC normalization failed: {}", utf8proc_errmsg(len)));
  out.append(reinterpret_cast<const char*>(normalized), static_cast<std::size_t>(len));
}

}  // namespace

void append_nfc(std::string_view text, std::string& out) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    std::size_t j = i;
    while (j < n && byte_at(text, j) < 0x80) ++j;
    if (j == n) {
      out.append(text.substr(i));
      return;
    }
    // The ASCII character before the run may compose with a combining mark that opens it.
    const std::size_t start = j > i ? j - 1 : j;
    out.append(text.substr(i, start - i));
    // An inert character is a starter that nothing reorders across or composes with, so the
    // run is normalized in pieces around it and it is copied as it is.
    std::size_t piece = start, end = j;
    while (end < n && byte_at(text, end) >= 0x80) {
      std::size_t len = 0;
      if (in_ranges(nfc_inert_ranges(), decode_utf8(text, end, len))) {
        append_utf8proc_nfc(text.substr(piece, end - piece), out);
        out.append(text.substr(end, len));
        piece = end + len;
      }
      end += len;
    }
    append_utf8proc_nfc(text.substr(piece, end - piece), out);
    i = end;
  }
}

bool is_unicode_whitespace(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || c == 0x20;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string_view whitespace_class_body() {
  return R"(\x{9}-\x{d}\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})";
}

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c == 0x200C || c == 0x200D) return true;  // Join_Control
  if ((c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
      (c >= 0x1F170 && c <= 0x1F189))
    return true;  // Other_Alphabetic symbols
  if (in_ranges(word_chars_since_unicode14(), c)) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

}  // namespace llmlab::tok
