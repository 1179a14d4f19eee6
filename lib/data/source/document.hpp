// A document as read from a dataset file, before tokenization: plain text, a chat, a
// prompt/completion pair, or pre-tokenized ids. `where` names its file and line for errors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace llmlab {

enum class DocKind { text, chat, prompt_completion, token_ids };

struct ChatMessage {
  std::string role;  // system | user | assistant | tool
  std::string content;
};

struct RawDocument {
  SourceLoc where;
  DocKind kind = DocKind::text;
  std::string text;                   // text
  std::vector<ChatMessage> messages;  // chat
  std::string prompt, completion;     // prompt_completion
  std::vector<std::int64_t> ids;      // token_ids
  std::vector<std::uint8_t> mask;     // token_ids: 1 = trained on; empty = every token
};

}  // namespace llmlab
