// --sweep key=v1,v2,...: plans the recipe at every point of a one- or two-key grid.
#pragma once

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

#include "recipe/raw_config.hpp"

namespace llmlab {

struct SweepAxis {
  std::string key;
  std::vector<std::string> values;
};

// Parses "key=v1,v2" where an integer range "a..b" or "a..b:step" stands for its values.
// Throws InputError.
SweepAxis parse_sweep_axis(const std::string& text);

struct SweepRow {
  std::vector<std::string> values;  // one per axis
  nlohmann::ordered_json plan;              // plan_json of that point
};

// Plans every grid point: each value is applied as a command-line override, so it is typed
// and validated like one. `memory_override` (when non-zero) replaces hardware.memory.
std::vector<SweepRow> run_sweep(const RawConfig& base, const std::vector<SweepAxis>& axes, std::uint64_t memory_override);

void print_sweep(const std::vector<SweepAxis>& axes, const std::vector<SweepRow>& rows, std::ostream& out);
nlohmann::ordered_json sweep_json(const std::vector<SweepAxis>& axes, const std::vector<SweepRow>& rows);

}  // namespace llmlab
