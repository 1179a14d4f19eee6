// Added (special and non-special) tokens: found in the text before any other processing,
// leftmost-longest, with the Hugging Face lstrip / rstrip / single_word rules.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmlab::tok {

struct AddedToken {
  std::string content;
  std::int32_t id = 0;
  bool single_word = false;  // match only where not preceded or followed by a word character
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = false;   // matched in the normalized text rather than the raw text
  bool special = false;
};

// A stretch of text: an added token (id >= 0) or text left to the model (id == -1).
struct TextSplit {
  std::size_t begin = 0, end = 0;
  std::int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // Searches for each token's `content`; contents must be non-empty and distinct.
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  bool empty() const { return tokens_.empty(); }

  // Appends splits covering `text` in order, as Hugging Face's AddedVocabulary::find_matches:
  // at the leftmost position where some content starts, the longest one; a single_word match
  // with a word character beside it is dropped (and the search resumes after it); lstrip and
  // rstrip widen the token's split over adjacent whitespace. Empty text gives no split.
  void split(std::string_view text, std::vector<TextSplit>& out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, std::int32_t>> next;
    std::int32_t token = -1;  // index into tokens_ of the content ending here
  };
  // The index of the longest content starting at text[i], with its end; -1 when none.
  std::int32_t longest_at(std::string_view text, std::size_t i, std::size_t& end) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;                  // a byte trie of the contents; nodes_[0] is the root
  std::array<std::int32_t, 256> first_{};    // the root's children, for a one-lookup skip
  int first_byte_ = -1;                      // the only first byte when all contents share it
};

}  // namespace llmlab::tok
