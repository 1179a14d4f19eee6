// UTF-8 helpers shared by the tokenizers: validation that reports the first bad byte, code
// point decoding, NFC, and the two Unicode classes the Hugging Face added-token rules use.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace llmlab::tok {

// Offset of the first byte that does not belong to a well-formed UTF-8 sequence (overlong
// forms, surrogates and code points above U+10FFFF are ill-formed), or npos.
std::size_t find_invalid_utf8(std::string_view text);

// Throws InputError "text is not valid UTF-8 (byte 0x.. at offset N)".
void require_utf8(std::string_view text);

// The code point starting at text[i] and its length in bytes; text must be valid UTF-8.
char32_t decode_utf8(std::string_view text, std::size_t i, std::size_t& len);
// The code point ending just before text[end] and its length; text must be valid UTF-8.
char32_t decode_utf8_before(std::string_view text, std::size_t end, std::size_t& len);

// Appends NFC(text) to out as the Hugging Face tokenizers library computes it; text must be
// valid UTF-8. That library's NFC has Unicode 9.0 tables, so characters assigned later are
// left alone (nfc_inert_ranges); everything else is utf8proc's NFC, identical for characters
// both know (normalization stability). ASCII is copied: an ASCII character never decomposes
// and never composes with what precedes it, so only non-ASCII stretches (with the character
// before each) go through utf8proc.
void append_nfc(std::string_view text, std::string& out);

struct CodePointRange {
  char32_t first, last;
};
bool in_ranges(std::span<const CodePointRange> sorted, char32_t c);

// Where the reference library's Unicode tables and Debian 12's differ, probed from the
// library by scripts/tokenizer-parity/unicode_delta.js (unicode_delta.cpp, generated); each
// list is sorted. Letters and numbers its \p{L} and \p{N} match that PCRE2 10.42 (Unicode
// 14.0) does not know:
std::span<const CodePointRange> letters_since_unicode14();
std::span<const CodePointRange> numbers_since_unicode14();
// Characters assigned since Unicode 14.0 that its \w (Rust regex) matches:
std::span<const CodePointRange> word_chars_since_unicode14();
// Characters utf8proc's NFC would reorder, decompose or compose but its NFC (Unicode 9.0
// tables) leaves alone:
std::span<const CodePointRange> nfc_inert_ranges();

// The Unicode White_Space property: what Rust's regex \s, Oniguruma's \s (the Hugging Face
// pre-tokenizer regex engine) and Python's tokenizers agree on. PCRE2's \s differs (it adds
// U+180E), which is why the pre-tokenizer rewrites \s with this list.
bool is_unicode_whitespace(char32_t c);
// PCRE2 character-class body listing the White_Space code points, for that rewrite.
std::string_view whitespace_class_body();

// Rust regex \w as the reference has it: Alphabetic, marks, decimal numbers, connector
// punctuation, joiners. Used by the single_word rule of added tokens. Alphabetic is letters,
// letter numbers and the Other_Alphabetic symbols (circled and squared Latin letters).
bool is_word_char(char32_t c);

}  // namespace llmlab::tok
