// pack-data's pipeline: read documents in windows of data.pack_window, tokenize them on all
// cores, cut over-long ones (split/truncate/drop), pack each window into rows, shuffle the rows
// (seeded), and write shards and a manifest into a fresh directory that replaces the output
// only when everything succeeded.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/shard/shard_format.hpp"
#include "data/tokenizer/tokenizer.hpp"
#include "spec/settings.hpp"

namespace llmlab {

struct PackProgress {
  std::uint64_t documents = 0;
  std::uint64_t tokens = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_total = 0;
  double seconds = 0;
};

struct ShardSummary {
  std::string file;  // name inside the output directory
  ShardInfo info;
};

struct PackStats {
  std::uint64_t records = 0;          // records read, bad ones included
  std::uint64_t documents = 0;        // documents packed (a split document counts once)
  std::uint64_t chunks = 0;           // pieces placed in rows
  std::uint64_t tokens = 0;           // real tokens in rows
  std::uint64_t rows = 0;
  std::uint64_t truncated = 0, truncated_tokens = 0;
  std::uint64_t split = 0;            // documents cut into several chunks
  std::uint64_t dropped = 0, dropped_tokens = 0;
  std::uint64_t loss_tokens = 0;      // tokens with loss mask 1
  std::map<std::string, std::uint64_t> bad;  // reason -> records skipped (--skip-bad)
  std::vector<std::string> bad_examples;     // the first few, with file:line
  std::vector<std::uint64_t> length_histogram;  // document tokens, bucket k = [2^k, 2^(k+1))
  std::vector<ShardSummary> shards;
  std::uint64_t input_bytes = 0;
  double seconds = 0;
};

// Runs the whole job. `tokenizer_path` is recorded in the manifest ("byte" for the embedded
// tokenizer). Throws InputError on bad input (unless settings.skip_bad) and Error on I/O
// failure; in both cases nothing is left at settings.output that was not there before.
PackStats pack_dataset(const DataSettings& settings, const Tokenizer& tokenizer, const std::string& tokenizer_path,
                       const std::function<void(const PackProgress&)>& progress);

// The manifest written beside the shards (also pack-data's --json output).
nlohmann::ordered_json pack_manifest(const DataSettings& settings, const Tokenizer& tokenizer,
                                     const std::string& tokenizer_path, const PackStats& stats);

// Reads <dir>/manifest.json; throws InputError when missing or not a pack-data manifest.
nlohmann::json read_manifest(const std::string& dir);

}  // namespace llmlab
