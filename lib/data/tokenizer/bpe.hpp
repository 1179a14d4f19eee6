// The byte-level BPE model: a pre-token's bytes -> ids by applying merges in rank order,
// exactly as the Hugging Face tokenizers library (models/bpe/{model,word}.rs) does.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/tokenizer/piece_cache.hpp"

namespace llmlab::tok {

// bytes -> id, searchable by string_view without building a std::string.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIndex = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  struct Merge {
    std::int32_t left = 0, right = 0, result = 0;
  };

  // `byte_ids[b]`: the id of the one-byte token for byte b. `whole_tokens`: bytes -> id of
  // every vocabulary entry (for ignore_merges). `merges` in rank order; a pair listed twice
  // keeps its last rank, as Hugging Face's merge map does.
  BpeModel(const std::array<std::int32_t, 256>& byte_ids,
           TokenIndex whole_tokens, const std::vector<Merge>& merges,
           bool ignore_merges);

  // Appends the ids of one pre-token (raw bytes), using and filling `cache`.
  void encode(std::string_view piece, PieceCache& cache, std::vector<std::int32_t>& out) const;

 private:
  struct MergeValue {
    std::uint32_t rank = 0;
    std::int32_t result = 0;
  };
  // The merge for the pair (left, right), or nullptr.
  const MergeValue* find_merge(std::int32_t left, std::int32_t right) const;
  void merge(std::string_view piece, std::vector<std::int32_t>& out) const;

  std::array<std::int32_t, 256> byte_ids_;
  TokenIndex whole_tokens_;
  bool ignore_merges_;
  // Open-addressing map (left << 32 | right) -> merge; kEmpty marks a free slot.
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
  std::vector<std::uint64_t> merge_keys_;
  std::vector<MergeValue> merge_values_;
};

}  // namespace llmlab::tok
