// RawDocument -> token ids and a per-token loss mask (1 = this token is a training target).
// Text trains on every token; prompt/completion on the completion (and EOS); chats on the
// assistant turns, template end marker included; pre-tokenized records on their labels/mask.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/source/document.hpp"
#include "data/tokenizer/tokenizer.hpp"
#include "spec/settings.hpp"

namespace llmlab {

// A chat template: `prefix` once, then `message` per message with {role} and {content}
// substituted. The text of `message` after {content} (the end marker) belongs to the turn.
struct ChatTemplate {
  std::string prefix;
  std::string message;
};

// The built-in templates, or the recipe's custom one. Throws InputError when a custom message
// lacks exactly one {content}.
ChatTemplate chat_template(const DataSettings& settings);

struct TokenizedDoc {
  std::vector<std::int32_t> tokens;
  std::vector<std::uint8_t> loss_mask;
};

class DocumentRenderer {
 public:
  // Resolves BOS/EOS and the chat template; throws InputError when a needed special token is
  // not in the vocabulary.
  DocumentRenderer(const Tokenizer& tokenizer, const DataSettings& settings);

  // Throws InputError (at doc.where) for an empty document, an id outside the vocabulary, an
  // unknown chat role, or invalid UTF-8.
  TokenizedDoc render(const RawDocument& doc) const;
  // The tokens a prompt/completion document starts with (BOS when add_bos, then the prompt):
  // what a policy trained on such documents continues (rl-train's prompts).
  std::vector<std::int32_t> prompt_tokens(const std::string& prompt) const;
  // The end-of-sequence token (data.eos_token or the tokenizer's usual one), if any.
  std::optional<std::int32_t> eos() const { return eos_; }

 private:
  void append(TokenizedDoc& out, const std::string& text, std::uint8_t mask) const;

  const Tokenizer& tokenizer_;
  DataSettings settings_;
  ChatTemplate template_;
  std::optional<std::int32_t> bos_, eos_;
};

}  // namespace llmlab
