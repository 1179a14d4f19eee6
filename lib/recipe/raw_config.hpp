// The untyped layer of the recipe loader: YAML files flattened to dotted keys, each leaf with
// the file:line:column it came from; `defaults:` merged first, Hugging Face config.json
// expanded into model.* keys, and command-line overrides applied last.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>

#include "core/error.hpp"

namespace llmlab {

struct RawEntry {
  YAML::Node value;  // a scalar, a sequence or null
  SourceLoc where;
  bool from_command_line = false;
};

struct RawConfig {
  std::string path;                        // top-level recipe file
  std::map<std::string, RawEntry> entries;  // dotted key -> leaf

  // Drops every entry equal to `prefix` or under `prefix.`.
  void erase_section(const std::string& prefix);
};

// Reads `path` and its `defaults:` chain. Throws InputError on a missing file, malformed YAML,
// a non-mapping document or an inheritance cycle.
RawConfig load_raw_config(const std::string& path);

// Applies one command-line override "dotted.key=value"; the value is parsed as YAML so that
// numbers, booleans and lists keep their types. Throws InputError when malformed.
void apply_override(RawConfig& config, const std::string& assignment);

// The model.* entries described by a Hugging Face config.json (llama, mistral, qwen2, qwen3,
// gpt2, deepseek_v3, kimi_vl). `where` locates the key that named the file.
std::map<std::string, RawEntry> hf_config_entries(const std::string& path, const SourceLoc& where);

enum class Syntax { yaml, json };

// Parses a YAML (or JSON) file; a missing file is reported at `named_at` under `key`, a syntax
// error at its own line and column. `what` names the file's role ("recipe", "config.json").
YAML::Node read_yaml_file(const std::string& path, const SourceLoc& named_at, const std::string& key,
                          const std::string& what, Syntax syntax = Syntax::yaml);

// Line/column of a YAML node in `file` (1-based).
SourceLoc mark_of(const YAML::Node& node, const std::string& file);

}  // namespace llmlab
