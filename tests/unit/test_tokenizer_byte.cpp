// The embedded byte-level tokenizer: id layout, special tokens in text, round trips, and the
// errors for invalid UTF-8 and ids outside the vocabulary.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "data/tokenizer/tokenizer.hpp"

using namespace llmlab;
using Ids = std::vector<std::int32_t>;

TEST_CASE("byte tokenizer ids are bytes then nine special tokens") {
  const auto tok = make_byte_tokenizer();
  CHECK(tok->vocab_size() == 265);
  CHECK(tok->identity() == "byte-level-v1");
  CHECK(tok->encode("Hi!") == Ids{72, 105, 33});
  CHECK(tok->encode("\xc3\xa9") == Ids{0xc3, 0xa9});
  CHECK(tok->encode("").empty());
  const char* specials[] = {"<|bos|>",         "<|eos|>",           "<|pad|>",
                            "<|im_start|>",    "<|im_end|>",        "<|begin_of_text|>",
                            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
  for (int i = 0; i < 9; ++i) {
    CHECK(tok->special_token(specials[i]) == 256 + i);
    CHECK(tok->encode(specials[i]) == Ids{256 + i});
    CHECK(tok->decode(Ids{256 + i}) == specials[i]);
  }
  CHECK_FALSE(tok->special_token("<|endoftext|>").has_value());
}

TEST_CASE("byte tokenizer finds special tokens written in the text") {
  const auto tok = make_byte_tokenizer();
  CHECK(tok->encode("<|im_start|>a<|im_end|>") == Ids{259, 97, 260});
  // Not a special token: stays bytes, including a '<' that only starts a near miss.
  CHECK(tok->encode("<|im_star") == Ids{60, 124, 105, 109, 95, 115, 116, 97, 114});
  CHECK(tok->encode("<<|bos|>") == Ids{60, 256});
  CHECK(tok->encode("<|bos|><|eos|>") == Ids{256, 257});
}

TEST_CASE("byte tokenizer round trips any valid UTF-8") {
  const auto tok = make_byte_tokenizer();
  const std::vector<std::string> texts = {"", "plain ascii", "日本語 🇯🇵 e\xcc\x81", "<|eot_id|> after\n\ttabs  ",
                                         std::string("nul\0byte", 8)};
  for (const std::string& s : texts) {
    CHECK(tok->decode(tok->encode(s)) == s);
  }
  std::string all;  // every code point length, at the edges of each range
  for (const char* cp : {"\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
                         "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"})
    all += cp;
  CHECK(tok->decode(tok->encode(all)) == all);
}

TEST_CASE("invalid UTF-8 is an input error naming the byte offset") {
  const auto tok = make_byte_tokenizer();
  const struct {
    std::string text;
    const char* where;
  } cases[] = {
      {"ab\xff", "offset 2"},                 // never valid
      {"abc\xc3", "offset 3"},                // truncated sequence
      {"x\xc0\x80", "offset 1"},              // overlong NUL
      {"12345678\xed\xa0\x80", "offset 8"},   // surrogate, after an 8-byte ASCII block
      {"\xf4\x90\x80\x80", "offset 0"},       // above U+10FFFF
      {"ok \xe2\x82", "offset 3"},            // truncated 3-byte sequence
  };
  for (const auto& c : cases) {
    CAPTURE(c.where);
    CHECK_THROWS_WITH_AS(tok->encode(c.text), doctest::Contains(c.where), InputError);
  }
}

TEST_CASE("decoding an id outside the vocabulary is an input error") {
  const auto tok = make_byte_tokenizer();
  CHECK_THROWS_WITH_AS(tok->decode(Ids{72, 265}), doctest::Contains("265"), InputError);
  CHECK_THROWS_AS(tok->decode(Ids{-1}), InputError);
}
