// Encoding and decoding with a loaded Hugging Face byte-level BPE tokenizer.
#include "data/tokenizer/hf_tokenizer.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "data/tokenizer/unicode_text.hpp"

namespace llmlab::tok {

namespace {

AddedTokenMatcher matcher_for(const std::vector<AddedToken>& added, bool normalized, bool nfc) {
  std::vector<AddedToken> tokens;
  for (const AddedToken& t : added) {
    if (t.normalized != normalized) continue;
    tokens.push_back(t);
    // A normalized token is looked for as the normalizer would write it.
    if (normalized && nfc) {
      tokens.back().content.clear();
      append_nfc(t.content, tokens.back().content);
    }
  }
  return AddedTokenMatcher(std::move(tokens));
}

}  // namespace

HfTokenizer::HfTokenizer(HfTokenizerParts parts)
    : identity_(std::move(parts.identity)),
      nfc_(parts.nfc),
      raw_tokens_(matcher_for(parts.added, false, parts.nfc)),
      normalized_tokens_(matcher_for(parts.added, true, parts.nfc)),
      pretokenizer_(std::move(parts.pretokenizer)),
      model_(std::move(parts.model)) {
  for (const AddedToken& t : parts.added) added_ids_.emplace(t.content, t.id);
  decode_offsets_.reserve(parts.id_bytes.size() + 1);
  decode_offsets_.push_back(0);
  decode_known_.reserve(parts.id_bytes.size());
  for (const auto& bytes : parts.id_bytes) {
    if (bytes) decode_bytes_ += *bytes;
    decode_offsets_.push_back(decode_bytes_.size());
    decode_known_.push_back(bytes.has_value());
  }
}

void HfTokenizer::encode_stretch(std::string_view text, PieceCache& cache, std::string& scratch,
                                 std::vector<std::int32_t>& out) const {
  pretokenizer_.for_each(text, scratch, [&](std::string_view piece) { model_.encode(piece, cache, out); });
}

void HfTokenizer::encode(std::string_view text, std::vector<std::int32_t>& out) const {
  require_utf8(text);
  PieceCache& cache = thread_piece_cache(cache_owner_);
  std::vector<TextSplit> raw, inner;
  std::string normalized, scratch;
  raw_tokens_.split(text, raw);
  for (const TextSplit& split : raw) {
    if (split.id >= 0) {
      out.push_back(split.id);
      continue;
    }
    std::string_view stretch = text.substr(split.begin, split.end - split.begin);
    // Hugging Face normalizes each stretch between added tokens on its own.
    if (nfc_) {
      normalized.clear();
      append_nfc(stretch, normalized);
      stretch = normalized;
    }
    if (normalized_tokens_.empty()) {
      encode_stretch(stretch, cache, scratch, out);
      continue;
    }
    inner.clear();
    normalized_tokens_.split(stretch, inner);
    for (const TextSplit& part : inner) {
      if (part.id >= 0)
        out.push_back(part.id);
      else
        encode_stretch(stretch.substr(part.begin, part.end - part.begin), cache, scratch, out);
    }
  }
}

std::string HfTokenizer::decode(std::span<const std::int32_t> ids) const {
  std::string out;
  for (const std::int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || !decode_known_[static_cast<std::size_t>(id)])
      throw InputError(fmt::format("token id {} is outside the vocabulary of {} ({} ids)", id, identity_, vocab_size()));
    const auto i = static_cast<std::size_t>(id);
    out.append(decode_bytes_, decode_offsets_[i], decode_offsets_[i + 1] - decode_offsets_[i]);
  }
  return out;
}

std::optional<std::int32_t> HfTokenizer::special_token(std::string_view text) const {
  const auto it = added_ids_.find(text);
  if (it == added_ids_.end()) return std::nullopt;
  return it->second;
}

}  // namespace llmlab::tok
