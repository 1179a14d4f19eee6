// Training and evaluation data for train: shard files resolved from pack-data output
// directories, checked against the model and recipe before any compute starts (tokenizer,
// vocabulary, packing length, enough rows for one batch), each failure one clear line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/shard/shard_format.hpp"
#include "recipe/recipe.hpp"

namespace llmlab {

struct ShardSet {
  std::vector<std::string> files;
  ShardInfo info;            // of the first shard; all agree on tokenizer and packing length
  std::uint64_t rows = 0;    // over all shards
  std::uint64_t tokens = 0;
  std::uint64_t position_end = 0;  // one past the largest position id (ShardReader::position_end)
  std::string position_end_file;   // the shard that reaches it
};

// Resolves `paths` (pack-data output directories, via their manifest, or shard files) and
// verifies every shard (header, sizes, checksum). `key` names the recipe key for errors.
ShardSet open_shards(const Recipe& recipe, const std::vector<std::string>& paths, const std::string& key);

// Errors when the shards cannot feed this model and recipe: vocabulary larger than
// model.vocab_size, a packing length other than data.packing_length, a tokenizer other than
// data.tokenizer (when the recipe names one), fewer rows than one micro-batch per rank,
// positions (of split documents) beyond a learned position table.
void check_shards_fit(const Recipe& recipe, const ShardSet& shards, const std::string& key);

}  // namespace llmlab
