// Writes a shard atomically and streaming: tokens go to a temporary file beside the target (mask
// bits and docs to two scratch temporaries there, since the format places them after all
// tokens), the sections, index and an xxh64 checksum follow at finish(), then fsync and rename.
// Until finish() returns, whatever was at the target path is untouched; a writer destroyed
// without finish(), or hit by an I/O error, removes its temporary files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "data/shard/shard_format.hpp"

namespace llmlab {

class ShardWriter {
 public:
  ShardWriter(std::string path, std::uint32_t packing_length, std::uint64_t vocab_size, std::string tokenizer);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Throws Error naming the file on I/O failure (e.g. disk full; the writer is then spent),
  // InputError when the row is invalid: no documents, an empty document, doc lengths not summing
  // to tokens.size(), more than packing_length tokens, an id outside the vocabulary, or a
  // loss_mask not of 0/1 values of tokens.size(). A rejected row leaves the writer usable.
  void add(const PackedRow& row);
  ShardInfo finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace llmlab
