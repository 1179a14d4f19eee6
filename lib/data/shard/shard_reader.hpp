// Reads and verifies a shard: header, sizes and the xxh64 checksum are checked when it is
// opened, so a truncated, corrupt or half-written file is an error, never silently wrong rows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "data/shard/shard_format.hpp"

namespace llmlab {

class ShardReader {
 public:
  // Throws InputError naming the file and what is wrong (magic, version, size, checksum).
  explicit ShardReader(const std::string& path);
  ~ShardReader();
  ShardReader(ShardReader&&) noexcept;
  ShardReader& operator=(ShardReader&&) noexcept;

  const ShardInfo& info() const;
  std::uint64_t rows() const;
  PackedRow row(std::uint64_t index) const;
  // One past the largest position id of any token: documents split into continuation rows
  // carry on counting positions, which a learned position table must cover.
  std::uint64_t position_end() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace llmlab
