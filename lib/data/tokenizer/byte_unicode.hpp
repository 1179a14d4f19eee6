// GPT-2's byte <-> unicode table. Byte-level BPE vocabularies spell every byte as a printable
// character (space is 'Ġ' U+0120, newline 'Ċ' U+010A), so a token string in tokenizer.json
// stands for the bytes its characters map back to.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace llmlab::tok {

// The character GPT-2 uses for byte b: printable Latin-1 bytes stand for themselves, the other
// 68 are numbered from U+0100 in byte order.
char32_t byte_to_unicode(std::uint8_t b);

// Appends the bytes a vocabulary entry stands for and returns true when every character of it
// is in the table. Otherwise appends the entry's own UTF-8 and returns false, as the Hugging
// Face ByteLevel decoder does for such entries (they cannot come out of byte-level encoding).
bool token_to_bytes(std::string_view token, std::string& out);

}  // namespace llmlab::tok
