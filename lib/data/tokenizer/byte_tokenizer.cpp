// The embedded byte-level tokenizer: ids 0..255 are the bytes, then nine special tokens
// (llmlab's own, then ChatML and Llama 3 chat markers) recognised when written in the text.
#include <fmt/format.h>

#include <array>
#include <string_view>

#include "core/error.hpp"
#include "data/tokenizer/added_tokens.hpp"
#include "data/tokenizer/tokenizer.hpp"
#include "data/tokenizer/unicode_text.hpp"

namespace llmlab {

namespace {

// Order is the id order: <|bos|> is 256 ... <|eot_id|> is 264. Append only: ids are in data.
constexpr std::array<std::string_view, 9> kSpecials = {
    "<|bos|>",    "<|eos|>",           "<|pad|>",         "<|im_start|>", "<|im_end|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
};
constexpr std::int32_t kFirstSpecial = 256;

tok::AddedTokenMatcher special_matcher() {
  std::vector<tok::AddedToken> tokens;
  for (std::size_t i = 0; i < kSpecials.size(); ++i) {
    tok::AddedToken t;
    t.content = kSpecials[i];
    t.id = kFirstSpecial + static_cast<std::int32_t>(i);
    t.special = true;
    tokens.push_back(std::move(t));
  }
  return tok::AddedTokenMatcher(std::move(tokens));
}

class ByteTokenizer final : public Tokenizer {
 public:
  using Tokenizer::encode;
  void encode(std::string_view text, std::vector<std::int32_t>& out) const override {
    tok::require_utf8(text);
    std::vector<tok::TextSplit> splits;
    specials_.split(text, splits);
    for (const tok::TextSplit& s : splits) {
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      for (std::size_t i = s.begin; i < s.end; ++i) out.push_back(static_cast<std::uint8_t>(text[i]));
    }
  }

  std::string decode(std::span<const std::int32_t> ids) const override {
    std::string out;
    for (const std::int32_t id : ids) {
      if (id >= 0 && id < kFirstSpecial)
        out.push_back(static_cast<char>(static_cast<std::uint8_t>(id)));
      else if (id >= kFirstSpecial && id < vocab_size())
        out += kSpecials[static_cast<std::size_t>(id - kFirstSpecial)];
      else
        throw InputError(fmt::format("token id {} is outside the byte-level vocabulary (0..{})", id, vocab_size() - 1));
    }
    return out;
  }

  std::int64_t vocab_size() const override { return kFirstSpecial + static_cast<std::int64_t>(kSpecials.size()); }

  std::optional<std::int32_t> special_token(std::string_view text) const override {
    for (std::size_t i = 0; i < kSpecials.size(); ++i)
      if (kSpecials[i] == text) return kFirstSpecial + static_cast<std::int32_t>(i);
    return std::nullopt;
  }

  std::string identity() const override { return "byte-level-v1"; }

 private:
  tok::AddedTokenMatcher specials_ = special_matcher();
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace llmlab
