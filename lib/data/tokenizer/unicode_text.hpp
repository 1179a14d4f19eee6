// UTF-8 helpers shared by the tokenizers: validation that reports the first bad byte, code
// point decoding, NFC, and the two Unicode classes the Hugging Face added-token rules use.
#pragma once

#include <cstddef>
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

// Appends NFC(text) to out; text must be valid UTF-8. Runs of ASCII are copied: an ASCII
// character never decomposes and never composes with what precedes it, so only the non-ASCII
// stretches (with the character before each) go through utf8proc.
void append_nfc(std::string_view text, std::string& out);

// The Unicode White_Space property: what Rust's regex \s, Oniguruma's \s (the Hugging Face
// pre-tokenizer regex engine) and Python's tokenizers agree on. PCRE2's \s differs (it adds
// U+180E), which is why the pre-tokenizer rewrites \s with this list.
bool is_unicode_whitespace(char32_t c);
// PCRE2 character-class body listing the White_Space code points, for that rewrite.
std::string_view whitespace_class_body();

// Rust regex \w: Alphabetic, marks, decimal numbers, connector punctuation, joiners. Used by
// the single_word rule of added tokens. Alphabetic is approximated by letters, letter numbers
// and the Other_Alphabetic symbols (circled and squared Latin letters).
bool is_word_char(char32_t c);

}  // namespace llmlab::tok
