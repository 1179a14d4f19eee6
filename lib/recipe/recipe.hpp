// Recipe: a YAML recipe (with `defaults:` inheritance and dotted command-line overrides)
// resolved into typed, validated settings. Every tool starts here; nothing else parses
// configuration.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "recipe/raw_config.hpp"
#include "rl/rl_settings.hpp"
#include "spec/bench_settings.hpp"
#include "spec/model_spec.hpp"
#include "spec/settings.hpp"

namespace llmlab {

struct Recipe : RunSettings {
  ModelSpec model;
  RlSettings rl;  // rl-train's keys (data.max_prompt_length, rollout.*, task.*, algorithm.*, ...)
  AttentionBenchSettings bench;  // bench-attn's keys (bench.*)

  std::string path;                          // the recipe file given by the user
  std::map<std::string, SourceLoc> sources;  // where each key that was set came from
  std::vector<std::string> warnings;         // harmless oddities, already located

  // Where `key` was set, or an empty location when it holds its default.
  SourceLoc where(const std::string& key) const;
  // Where to point an error about `key`: where it was set, else the recipe file itself.
  SourceLoc locate(const std::string& key) const;
  bool is_set(const std::string& key) const { return sources.count(key) != 0; }
  // Whether any model.* key was given (pack-data needs no model; memory-plan and train do).
  bool has_model() const;
};

// Throws InputError naming the recipe when it has no model section.
void require_model(const Recipe& recipe);

// Binds raw entries to typed settings: unknown keys, wrong types and out-of-range values are
// InputErrors naming file:line:column and key; then derived defaults are resolved and
// contradictions checked. Throws InputError.
Recipe bind_recipe(const RawConfig& raw);

// load_raw_config + apply_override for each "key=value" + bind_recipe.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});

// The fully resolved recipe as YAML (every key, defaults included); loading it gives the
// same settings.
std::string resolved_yaml(const Recipe& recipe);

// One line per key: key, type, default, meaning (for --list-keys and the README).
std::string describe_keys();

}  // namespace llmlab
