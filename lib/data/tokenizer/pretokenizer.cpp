// Runs the Split stages depth-first, so no list of pre-tokens is ever built for a long text,
// then ByteLevel's prefix space and GPT-2 split (pre_tokenizers/{split,byte_level}.rs).
#include "data/tokenizer/pretokenizer.hpp"

namespace llmlab::tok {

void PreTokenizer::for_each(std::string_view text, std::string& scratch, Visitor<std::string_view> visit) const {
  if (!text.empty()) run(text, {0, text.size()}, 0, scratch, visit);
}

void PreTokenizer::run(std::string_view base, Span piece, std::size_t stage, std::string& scratch,
                       Visitor<std::string_view> visit) const {
  if (stage < splits_.size()) {
    splits_[stage].split(base, piece, [&](Span part) { run(base, part, stage + 1, scratch, visit); });
    return;
  }
  std::string_view text = base.substr(piece.begin, piece.end - piece.begin);
  // Hugging Face prefixes every piece the earlier stages made, not only the first one.
  if (add_prefix_space_ && text.front() != ' ') {
    scratch.assign(1, ' ');
    scratch.append(text);
    text = scratch;
  }
  if (!byte_level_regex_) {
    visit(text);
    return;
  }
  byte_level_regex_->split(text, {0, text.size()}, [&](Span part) {
    visit(text.substr(part.begin, part.end - part.begin));
  });
}

}  // namespace llmlab::tok
