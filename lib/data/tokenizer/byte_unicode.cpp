// The GPT-2 byte <-> unicode table (openai/gpt-2 encoder.py bytes_to_unicode), built once.
#include "data/tokenizer/byte_unicode.hpp"

#include <array>

#include "data/tokenizer/unicode_text.hpp"

namespace llmlab::tok {

namespace {

struct Table {
  std::array<char32_t, 256> to_char{};
  // Inverse over U+0000..U+0143, the range the table's characters fall in; -1 = not in it.
  std::array<std::int16_t, 0x144> to_byte{};

  Table() {
    to_byte.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? static_cast<char32_t>(b) : next++;
      to_byte[to_char[b]] = static_cast<std::int16_t>(b);
    }
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

char32_t byte_to_unicode(std::uint8_t b) { return table().to_char[b]; }

bool token_to_bytes(std::string_view token, std::string& out) {
  const Table& t = table();
  const std::size_t mark = out.size();
  for (std::size_t i = 0; i < token.size();) {
    std::size_t len = 0;
    const char32_t c = decode_utf8(token, i, len);
    if (c >= t.to_byte.size() || t.to_byte[c] < 0) {
      out.resize(mark);
      out.append(token);
      return false;
    }
    out.push_back(static_cast<char>(t.to_byte[c]));
    i += len;
  }
  return true;
}

}  // namespace llmlab::tok
