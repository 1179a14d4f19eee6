// The table of every recipe key: its type, range, default and meaning, and how it is read
// into and printed from a Recipe. Binding, validation of unknown keys, --print-config and
// --list-keys all walk this one table.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace llmlab {

struct Recipe;

struct Field {
  std::string key;   // dotted, e.g. "train.micro_batch_size"
  std::string type;  // "integer >= 1", "one of none|full|...", "bytes", ...
  std::string doc;
  // Type-checks `value` (located at `where`) and stores it; throws InputError.
  std::function<void(Recipe&, const YAML::Node& value, const SourceLoc& where)> assign;
  // The resolved value as YAML text.
  std::function<std::string(const Recipe&)> show;
  bool printed = true;       // false for keys consumed by the loader (model.hf_config)
  std::string default_text;  // for --list-keys when the default is not a plain value
};

const std::vector<Field>& recipe_schema();
// rl-train's keys (schema_rl.cpp), appended to the schema.
void add_rl_fields(std::vector<Field>& schema);
// bench-attn's keys (schema_bench.cpp), appended to the schema.
void add_bench_fields(std::vector<Field>& schema);
const Field* find_field(const std::string& key);

}  // namespace llmlab
