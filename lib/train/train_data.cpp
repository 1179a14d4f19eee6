#include "train/train_data.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <memory>

#include "core/error.hpp"
#include "data/pack/pack_job.hpp"
#include "data/shard/shard_reader.hpp"
#include "data/tokenizer/tokenizer.hpp"

namespace llmlab {

ShardSet open_shards(const Recipe& recipe, const std::vector<std::string>& paths, const std::string& key) {
  namespace fs = std::filesystem;
  ShardSet set;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      const auto manifest = read_manifest(p);
      for (const auto& shard : manifest.at("shards")) set.files.push_back((fs::path(p) / shard.at("file").get<std::string>()).string());
    } else if (fs::exists(p, ec)) {
      set.files.push_back(p);
    } else {
      throw InputError(recipe.locate(key), key, fmt::format("'{}' does not exist (expected a pack-data output directory or a shard file)", p));
    }
  }
  if (set.files.empty())
    throw InputError(recipe.locate(key), key, "no shards: point it at a pack-data output directory (see pack-data --help)");
  for (std::size_t i = 0; i < set.files.size(); ++i) {
    const ShardReader reader(set.files[i]);  // verifies magic, sizes and checksum
    const ShardInfo& info = reader.info();
    if (i == 0) {
      set.info = info;
    } else if (info.tokenizer != set.info.tokenizer || info.packing_length != set.info.packing_length) {
      throw InputError(SourceLoc{set.files[i], 0, 0}, key,
                       fmt::format("packed with tokenizer '{}' and packing length {}, but {} used '{}' and {}: shards of "
                                   "one run must come from the same tokenizer and packing length",
                                   info.tokenizer, info.packing_length, set.files[0], set.info.tokenizer,
                                   set.info.packing_length));
    }
    set.rows += info.rows;
    set.tokens += info.tokens;
    if (reader.position_end() > set.position_end) {
      set.position_end = reader.position_end();
      set.position_end_file = set.files[i];
    }
  }
  return set;
}

void check_shards_fit(const Recipe& recipe, const ShardSet& shards, const std::string& key) {
  const ShardInfo& info = shards.info;
  const std::string& first = shards.files.front();
  if (static_cast<std::int64_t>(info.vocab_size) > recipe.model.vocab_size)
    throw InputError(SourceLoc{first, 0, 0}, key,
                     fmt::format("packed with tokenizer '{}' of {} tokens, more than model.vocab_size = {}: the model "
                                 "cannot embed its ids (pack with the model's tokenizer, or use a model with a larger "
                                 "vocabulary)",
                                 info.tokenizer, info.vocab_size, recipe.model.vocab_size));
  if (static_cast<std::int64_t>(info.packing_length) != recipe.data.packing_length)
    throw InputError(recipe.locate("data.packing_length"), "data.packing_length",
                     fmt::format("is {} but {} holds rows of {} tokens: set data.packing_length={} or re-pack",
                                 recipe.data.packing_length, first, info.packing_length, info.packing_length));
  if (recipe.is_set("data.tokenizer")) {
    const std::string& spec = recipe.data.tokenizer;
    const auto tokenizer = spec == "byte" ? make_byte_tokenizer() : load_hf_tokenizer(spec);
    if (tokenizer->identity() != info.tokenizer)
      throw InputError(recipe.locate("data.tokenizer"), "data.tokenizer",
                       fmt::format("is '{}' ({}) but {} was packed with '{}'", spec, tokenizer->identity(), first,
                                   info.tokenizer));
  }
  // A learned position table has rows for max_position_embeddings positions; pack-data's
  // split documents continue counting past the row length (for RoPE models that is the point).
  const ModelSpec& m = recipe.model;
  if (m.arch == Arch::gpt2 && shards.position_end > static_cast<std::uint64_t>(m.max_position_embeddings))
    throw InputError(SourceLoc{shards.position_end_file, 0, 0}, key,
                     fmt::format("long documents were split into rows that continue to position {}, but gpt2's "
                                 "learned positions stop at model.max_position_embeddings = {}: re-pack with "
                                 "data.overflow=truncate, or use a larger max_position_embeddings",
                                 shards.position_end - 1, m.max_position_embeddings));
  const std::uint64_t need = static_cast<std::uint64_t>(recipe.train.micro_batch_size * recipe.dist.world_size);
  if (shards.rows < need)
    throw InputError(recipe.locate("train.micro_batch_size"), "train.micro_batch_size",
                     fmt::format("one micro-batch needs {} rows ({} per rank x {} ranks) but {} has only {}", need,
                                 recipe.train.micro_batch_size, recipe.dist.world_size,
                                 shards.files.size() == 1 ? first : fmt::format("the {} shards", shards.files.size()),
                                 shards.rows));
}

}  // namespace llmlab
