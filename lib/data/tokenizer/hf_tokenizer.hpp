// The Hugging Face byte-level BPE tokenizer, assembled by load_hf_tokenizer from a
// tokenizer.json (hf_tokenizer_json.cpp). Encoding follows TokenizerImpl::encode: added tokens
// in the raw text, then per remaining stretch normalization, normalized added tokens,
// pre-tokenization, BPE.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "data/tokenizer/added_tokens.hpp"
#include "data/tokenizer/bpe.hpp"
#include "data/tokenizer/pretokenizer.hpp"
#include "data/tokenizer/tokenizer.hpp"

namespace llmlab::tok {

struct HfTokenizerParts {
  std::string identity;
  bool nfc = false;                    // normalizer: NFC (else none)
  std::vector<AddedToken> added;       // ids resolved; contents as in the file
  PreTokenizer pretokenizer;
  BpeModel model;
  // Bytes of each id's token (index = id), std::nullopt for ids no token has.
  std::vector<std::optional<std::string>> id_bytes;
};

class HfTokenizer final : public Tokenizer {
 public:
  explicit HfTokenizer(HfTokenizerParts parts);

  using Tokenizer::encode;
  void encode(std::string_view text, std::vector<std::int32_t>& out) const override;
  std::string decode(std::span<const std::int32_t> ids) const override;
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(decode_offsets_.size()) - 1; }
  std::optional<std::int32_t> special_token(std::string_view text) const override;
  std::string identity() const override { return identity_; }

 private:
  void encode_stretch(std::string_view text, PieceCache& cache, std::string& scratch,
                      std::vector<std::int32_t>& out) const;

  std::string identity_;
  bool nfc_;
  TokenIndex added_ids_;                 // content -> id, for special_token()
  AddedTokenMatcher raw_tokens_;         // added tokens with normalized = false
  AddedTokenMatcher normalized_tokens_;  // the others, matched in the normalized text
  PreTokenizer pretokenizer_;
  BpeModel model_;
  // Decoding: bytes of id i are decode_bytes_[decode_offsets_[i], decode_offsets_[i + 1]);
  // decode_known_[i] tells an empty token from an id without one.
  std::string decode_bytes_;
  std::vector<std::size_t> decode_offsets_;
  std::vector<bool> decode_known_;
  std::uint64_t cache_owner_ = new_cache_owner();
};

}  // namespace llmlab::tok
