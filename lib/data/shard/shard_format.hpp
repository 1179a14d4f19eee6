// The packed shard: rows of exactly packing_length token slots, each holding one or more
// documents back to back (rmpad: attention never crosses a document boundary, padding is
// never computed). Byte layout and versioning are documented in docs/shard-format.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llmlab {

// One document (or a chunk of one) placed in a row.
struct PackedDoc {
  std::uint32_t length = 0;           // tokens in this row
  std::uint32_t position_offset = 0;  // position id of its first token (> 0 for continuation chunks)
};

// One row as the packer produces it and the reader returns it.
struct PackedRow {
  std::vector<std::int32_t> tokens;    // the real tokens, sum of doc lengths (<= packing_length)
  std::vector<std::uint8_t> loss_mask; // 1 = train on predicting this token, per token
  std::vector<PackedDoc> docs;
};

struct ShardInfo {
  std::uint32_t version = 1;
  std::uint32_t packing_length = 0;
  std::uint64_t vocab_size = 0;
  std::uint64_t rows = 0;
  std::uint64_t docs = 0;
  std::uint64_t tokens = 0;     // real tokens (no padding)
  std::uint8_t token_bytes = 0; // 2 when vocab_size <= 65536, else 4
  std::string tokenizer;        // Tokenizer::identity()
};

// Version 1 constants (docs/shard-format.md).
inline constexpr char kShardMagic[8] = {'L', 'L', 'M', 'L', 'A', 'B', 'S', 'H'};
inline constexpr char kShardEndMagic[8] = {'S', 'H', 'A', 'R', 'D', 'E', 'N', 'D'};
inline constexpr std::uint32_t kShardVersion = 1;
inline constexpr std::uint64_t kShardFixedHeaderBytes = 56;    // before the tokenizer string
inline constexpr std::uint32_t kShardMaxTokenizerBytes = 65536;  // bounds a corrupt length field
inline constexpr std::uint64_t kShardFooterBytes = 16;         // xxh64 + end magic

// Byte offset of each section, all derived from the header's counts; every section starts at
// a multiple of 8 so the reader can view it in place.
struct ShardLayout {
  std::uint64_t tokens = 0;       // tokens x token_bytes
  std::uint64_t loss_mask = 0;    // ceil(tokens / 8) bytes, one bit per token
  std::uint64_t row_docs = 0;     // (rows + 1) x u64: index of each row's first doc
  std::uint64_t docs = 0;         // docs x (u32 length, u32 position_offset)
  std::uint64_t row_offsets = 0;  // (rows + 1) x u64: index of each row's first token
  std::uint64_t footer = 0;       // u64 xxh64 of bytes [0, footer), then kShardEndMagic
  std::uint64_t file_bytes = 0;
};

// The layout the header's counts describe; nullopt when they overflow 64 bits (a corrupt header).
std::optional<ShardLayout> shard_layout(const ShardInfo& info);

}  // namespace llmlab
