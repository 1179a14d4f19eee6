// Rendering documents to tokens and loss masks.
#include "data/source/render.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "data/source/document_reader.hpp"

namespace llmlab {

namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

// The first candidate the vocabulary knows.
std::optional<std::int32_t> first_special(const Tokenizer& t, const std::string& configured,
                                          std::initializer_list<const char*> usual, const char* key) {
  if (!configured.empty()) {
    auto id = t.special_token(configured);
    if (!id) throw InputError(SourceLoc{}, key, fmt::format("'{}' is not a token of the tokenizer", configured));
    return id;
  }
  for (const char* c : usual)
    if (auto id = t.special_token(c)) return id;
  return std::nullopt;
}

}  // namespace

ChatTemplate chat_template(const DataSettings& s) {
  switch (s.chat_template) {
    case ChatTemplateKind::chatml: return {"", "<|im_start|>{role}\n{content}<|im_end|>\n"};
    case ChatTemplateKind::llama3:
      return {"<|begin_of_text|>", "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"};
    case ChatTemplateKind::custom: break;
  }
  const std::size_t first = s.chat_message.find("{content}");
  if (first == std::string::npos || s.chat_message.find("{content}", first + 1) != std::string::npos)
    throw InputError(SourceLoc{}, "data.chat_message", "a custom chat template needs {content} exactly once");
  return {s.chat_prefix, s.chat_message};
}

DocumentRenderer::DocumentRenderer(const Tokenizer& tokenizer, const DataSettings& settings)
    : tokenizer_(tokenizer), settings_(settings), template_(chat_template(settings)) {
  bos_ = first_special(tokenizer, settings.bos_token, {"<|bos|>", "<|begin_of_text|>", "<s>"}, "data.bos_token");
  eos_ = first_special(tokenizer, settings.eos_token, {"<|eos|>", "<|endoftext|>", "<|end_of_text|>", "</s>"},
                       "data.eos_token");
  if (settings.add_bos && !bos_)
    throw InputError(SourceLoc{}, "data.bos_token", "the tokenizer has no usual BOS token; name one or set add_bos false");
  if (settings.add_eos && !eos_)
    throw InputError(SourceLoc{}, "data.eos_token", "the tokenizer has no usual EOS token; name one or set add_eos false");
}

std::vector<std::int32_t> DocumentRenderer::prompt_tokens(const std::string& prompt) const {
  TokenizedDoc out;
  if (settings_.add_bos) out.tokens.push_back(*bos_);
  append(out, prompt, 0);
  return out.tokens;
}

void DocumentRenderer::append(TokenizedDoc& out, const std::string& text, std::uint8_t mask) const {
  tokenizer_.encode(text, out.tokens);
  out.loss_mask.resize(out.tokens.size(), mask);
}

TokenizedDoc DocumentRenderer::render(const RawDocument& doc) const {
  TokenizedDoc out;
  auto special = [&](std::optional<std::int32_t> id, std::uint8_t mask) {
    out.tokens.push_back(*id);
    out.loss_mask.push_back(mask);
  };
  switch (doc.kind) {
    case DocKind::text:
      if (settings_.add_bos) special(bos_, 0);  // nothing predicts BOS
      append(out, doc.text, 1);
      if (settings_.add_eos) special(eos_, 1);
      break;
    case DocKind::prompt_completion:
      if (settings_.add_bos) special(bos_, 0);
      append(out, doc.prompt, 0);
      append(out, doc.completion, 1);
      if (settings_.add_eos) special(eos_, 1);
      break;
    case DocKind::chat: {
      static const std::array<const char*, 4> roles{"system", "user", "assistant", "tool"};
      if (doc.messages.empty()) throw InputError(doc.where, "messages", "empty conversation");
      append(out, template_.prefix, 0);
      for (const auto& m : doc.messages) {
        if (std::find(roles.begin(), roles.end(), m.role) == roles.end())
          throw InputError(doc.where, "messages", fmt::format("unknown role '{}' (system, user, assistant, tool)", m.role));
        std::string head = template_.message.substr(0, template_.message.find("{content}"));
        std::string tail = template_.message.substr(template_.message.find("{content}") + 9);
        replace_all(head, "{role}", m.role);
        replace_all(tail, "{role}", m.role);
        const std::uint8_t train = m.role == "assistant" ? 1 : 0;
        append(out, head, 0);
        append(out, m.content, train);
        append(out, tail, train);  // the end marker: the model must learn to stop
      }
      break;
    }
    case DocKind::token_ids: {
      const std::int64_t vocab = tokenizer_.vocab_size();
      for (std::size_t i = 0; i < doc.ids.size(); ++i) {
        if (doc.ids[i] < 0 || doc.ids[i] >= vocab)
          throw InputError(doc.where, "input_ids",
                           fmt::format("token id {} at position {} is outside the vocabulary (size {})", doc.ids[i], i, vocab));
        out.tokens.push_back(static_cast<std::int32_t>(doc.ids[i]));
      }
      out.loss_mask = doc.mask.empty() ? std::vector<std::uint8_t>(out.tokens.size(), 1) : doc.mask;
      break;
    }
  }
  if (out.tokens.empty() || (doc.kind == DocKind::text && doc.text.empty()))
    throw InputError(doc.where, "", "empty document");
  return out;
}

}  // namespace llmlab
