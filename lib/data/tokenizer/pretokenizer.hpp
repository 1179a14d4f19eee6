// The pre-tokenizer pipeline llmlab supports: zero or more Split regexes (behavior Isolated),
// then ByteLevel (an optional prefix space, an optional split by the GPT-2 regex).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/regex.hpp"

namespace llmlab::tok {

// The GPT-2 pattern ByteLevel splits with when use_regex is true.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class PreTokenizer {
 public:
  PreTokenizer(std::vector<Regex> splits, bool add_prefix_space, std::optional<Regex> byte_level_regex)
      : splits_(std::move(splits)),
        add_prefix_space_(add_prefix_space),
        byte_level_regex_(std::move(byte_level_regex)) {}

  // Calls visit(pre_token) for each non-empty pre-token of `text`, in order. A pre-token may
  // live in `scratch` (when a prefix space was added); it is valid only during the call.
  void for_each(std::string_view text, std::string& scratch, Visitor<std::string_view> visit) const;

 private:
  void run(std::string_view base, Span piece, std::size_t stage, std::string& scratch,
           Visitor<std::string_view> visit) const;

  std::vector<Regex> splits_;
  bool add_prefix_space_;
  std::optional<Regex> byte_level_regex_;
};

}  // namespace llmlab::tok
