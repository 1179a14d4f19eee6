// Leftmost-longest search for added tokens over a byte trie, with the Hugging Face rules for
// lstrip, rstrip and single_word (tokenizers/src/tokenizer/added_vocabulary.rs, find_matches).
#include "data/tokenizer/added_tokens.hpp"

#include <algorithm>
#include <cstring>

#include "data/tokenizer/unicode_text.hpp"

namespace llmlab::tok {

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  first_.fill(-1);
  nodes_.emplace_back();
  for (std::size_t t = 0; t < tokens_.size(); ++t) {
    std::int32_t node = 0;
    for (const char ch : tokens_[t].content) {
      const auto byte = static_cast<unsigned char>(ch);
      const auto& next = nodes_[node].next;
      const auto it = std::find_if(next.begin(), next.end(), [&](const auto& e) { return e.first == byte; });
      if (it != next.end()) {
        node = it->second;
        continue;
      }
      const auto child = static_cast<std::int32_t>(nodes_.size());
      nodes_[node].next.emplace_back(byte, child);
      nodes_.emplace_back();
      if (node == 0) first_[byte] = child;
      node = child;
    }
    nodes_[node].token = static_cast<std::int32_t>(t);
  }
  const auto& roots = nodes_[0].next;
  if (roots.size() == 1) first_byte_ = roots[0].first;
}

std::int32_t AddedTokenMatcher::longest_at(std::string_view text, std::size_t i, std::size_t& end) const {
  std::int32_t node = first_[static_cast<unsigned char>(text[i])];
  std::int32_t found = -1;
  for (std::size_t k = i + 1;; ++k) {
    if (nodes_[node].token >= 0) {
      found = nodes_[node].token;
      end = k;
    }
    if (k == text.size()) break;
    const auto byte = static_cast<unsigned char>(text[k]);
    const auto& next = nodes_[node].next;
    const auto it = std::find_if(next.begin(), next.end(), [&](const auto& e) { return e.first == byte; });
    if (it == next.end()) break;
    node = it->second;
  }
  return found;
}

namespace {

bool word_char_before(std::string_view text, std::size_t pos) {
  std::size_t len = 0;
  return pos > 0 && is_word_char(decode_utf8_before(text, pos, len));
}

bool word_char_at(std::string_view text, std::size_t pos) {
  std::size_t len = 0;
  return pos < text.size() && is_word_char(decode_utf8(text, pos, len));
}

}  // namespace

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSplit>& out) const {
  std::size_t done = 0;  // end of the last split appended
  std::size_t i = 0;     // where the search resumes
  const std::size_t n = text.size();
  if (tokens_.empty()) {
    if (n > 0) out.push_back({0, n, -1});
    return;
  }
  while (i < n) {
    if (first_byte_ >= 0) {
      const void* hit = std::memchr(text.data() + i, first_byte_, n - i);
      if (hit == nullptr) break;
      i = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
    } else {
      while (i < n && first_[static_cast<unsigned char>(text[i])] < 0) ++i;
      if (i == n) break;
    }
    std::size_t stop = 0;
    const std::int32_t t = longest_at(text, i, stop);
    if (t < 0) {
      ++i;
      continue;
    }
    std::size_t start = i;
    i = stop;
    const AddedToken& token = tokens_[static_cast<std::size_t>(t)];
    if (token.single_word && (word_char_before(text, start) || word_char_at(text, stop))) continue;
    std::size_t len = 0;
    if (token.lstrip) {
      std::size_t s = start;
      while (s > 0 && is_unicode_whitespace(decode_utf8_before(text, s, len))) s -= len;
      // Whitespace an earlier match already took stays with it.
      start = std::max(s, done);
    }
    if (token.rstrip)
      while (stop < n && is_unicode_whitespace(decode_utf8(text, stop, len))) stop += len;
    if (done < start) out.push_back({done, start, -1});
    out.push_back({start, stop, token.id});
    done = stop;
  }
  if (done < n) out.push_back({done, n, -1});
}

}  // namespace llmlab::tok
