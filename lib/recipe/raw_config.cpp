// Loading recipe files into dotted keys with locations: inheritance through `defaults:`,
// cycle detection, config.json expansion and command-line overrides.
#include "recipe/raw_config.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "core/text.hpp"

namespace llmlab {

namespace fs = std::filesystem;

SourceLoc mark_of(const YAML::Node& node, const std::string& file) {
  const YAML::Mark m = node.Mark();
  if (m.line < 0) return SourceLoc{file, 0, 0};
  return SourceLoc{file, m.line + 1, m.column + 1};
}

void RawConfig::erase_section(const std::string& prefix) {
  for (auto it = entries.begin(); it != entries.end();) {
    const std::string& k = it->first;
    const bool inside = k == prefix || (k.size() > prefix.size() && k.compare(0, prefix.size(), prefix) == 0 &&
                                        k[prefix.size()] == '.');
    it = inside ? entries.erase(it) : std::next(it);
  }
}

namespace {

// yaml-cpp reports an unclosed '[' or '{' where it gave up (often the end of the file); the
// user needs the bracket that was never closed. Scans up to `end`, skipping quoted text and
// comments, and returns the 1-based line and column of the innermost open bracket.
std::pair<int, int> unclosed_bracket(const std::string& text, std::size_t end) {
  std::vector<std::pair<int, int>> open;
  int line = 1, column = 0;
  char quote = 0;
  bool comment = false;
  for (std::size_t i = 0; i < std::min(end, text.size()); ++i) {
    const char c = text[i];
    ++column;
    if (c == '\n') {
      ++line;
      column = 0;
      comment = false;
      continue;
    }
    if (comment) continue;
    if (quote) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '"' || c == '\'') quote = c;
    else if (c == '#' && (i == 0 || std::isspace(static_cast<unsigned char>(text[i - 1])))) comment = true;
    else if (c == '[' || c == '{') open.emplace_back(line, column);
    else if ((c == ']' || c == '}') && !open.empty()) open.pop_back();
  }
  return open.empty() ? std::pair<int, int>{0, 0} : open.back();
}

}  // namespace

YAML::Node read_yaml_file(const std::string& path, const SourceLoc& named_at, const std::string& key,
                          const std::string& what, Syntax syntax) {
  std::ifstream in(path);
  if (!in) {
    const std::string reason = std::strerror(errno);
    throw InputError(named_at, key, fmt::format("cannot open {} '{}': {}", what, path, reason));
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (syntax == Syntax::json) {
    // yaml-cpp reads JSON (for line marks) but reports JSON mistakes vaguely; a JSON parser
    // says exactly where the file stops being JSON.
    try {
      const auto parsed = nlohmann::json::parse(text);
      (void)parsed;
    } catch (const nlohmann::json::parse_error& e) {
      const auto upto = std::min(text.size(), e.byte > 0 ? e.byte - 1 : 0);
      const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(upto), '\n'));
      const std::size_t line_start = text.rfind('\n', upto == 0 ? 0 : upto - 1);
      const int column = static_cast<int>(upto - (line_start == std::string::npos ? 0 : line_start + 1)) + 1;
      std::string why = e.what();
      if (const auto colon = why.rfind(": "); colon != std::string::npos) why = why.substr(colon + 2);
      throw InputError(SourceLoc{path, line, column}, "", "malformed " + what + ": " + why);
    }
  }
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    SourceLoc where{path, e.mark.line + 1, e.mark.column + 1};
    if (e.msg.find("flow not found") != std::string::npos) {
      const auto [line, column] = unclosed_bracket(text, e.mark.pos < 0 ? text.size() : static_cast<std::size_t>(e.mark.pos));
      if (line > 0) where = SourceLoc{path, line, column};
    }
    // Never point past the last line (yaml-cpp's end-of-input mark is one line further).
    const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) +
                      (text.empty() || text.back() == '\n' ? 0 : 1);
    if (where.line > std::max(lines, 1)) where = SourceLoc{path, std::max(lines, 1), 0};
    throw InputError(where, "", "malformed " + what + ": " + e.msg);
  }
}

namespace {

// Paths inside a recipe are relative to the file that names them.
std::string relative_to(const std::string& including_file, const std::string& path) {
  const fs::path p(path);
  if (p.is_absolute()) return path;
  return (fs::path(including_file).parent_path() / p).lexically_normal().string();
}

std::string scalar_text(const YAML::Node& key, const std::string& file) {
  if (!key.IsScalar())
    throw InputError(mark_of(key, file), "", "keys must be plain names, not lists or mappings");
  return key.Scalar();
}

void flatten(const YAML::Node& map, const std::string& prefix, const std::string& file,
             std::map<std::string, RawEntry>& out) {
  for (const auto& kv : map) {
    const std::string name = scalar_text(kv.first, file);
    if (prefix.empty() && name == "defaults") continue;  // inheritance, handled by load_into
    if (name.empty() || name.find('.') != std::string::npos)
      throw InputError(mark_of(kv.first, file), prefix + name,
                       "keys are plain names; nest sections instead of writing dots");
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& value = kv.second;
    if (value.IsMap()) {
      flatten(value, key, file, out);
      continue;
    }
    SourceLoc where = mark_of(value, file);
    if (where.line == 0) where = mark_of(kv.first, file);
    out[key] = RawEntry{value, where, false};
  }
}

// Replaces the model section by what a Hugging Face config.json describes.
void expand_hf_config(std::map<std::string, RawEntry>& entries, const RawEntry& hf, const std::string& path) {
  RawConfig tmp;
  tmp.entries = std::move(entries);
  tmp.erase_section("model");
  entries = std::move(tmp.entries);
  for (auto& [k, v] : hf_config_entries(path, hf.where)) entries[k] = v;
  RawEntry named = hf;
  named.value = YAML::Node(path);
  entries["model.hf_config"] = named;
}

void load_into(const std::string& path, const SourceLoc& named_at, std::vector<std::string>& chain,
               std::map<std::string, RawEntry>& out) {
  std::error_code ec;
  const std::string canonical = fs::weakly_canonical(path, ec).string();
  for (const auto& seen : chain) {
    if (seen == canonical) {
      std::vector<std::string> cycle(chain.begin(), chain.end());
      cycle.push_back(canonical);
      throw InputError(named_at, "defaults", "inheritance cycle: " + join(cycle, " -> "));
    }
  }
  const YAML::Node doc = read_yaml_file(path, named_at, named_at.known() ? "defaults" : "", "recipe");
  if (doc.IsNull()) return;  // an empty recipe sets nothing
  if (!doc.IsMap())
    throw InputError(mark_of(doc, path), "", "a recipe must be a mapping of sections (model:, train:, ...)");

  chain.push_back(canonical);
  if (const YAML::Node defaults = doc["defaults"]) {
    std::vector<YAML::Node> items;
    if (defaults.IsScalar())
      items.push_back(defaults);
    else if (defaults.IsSequence())
      for (const auto& d : defaults) items.push_back(d);
    else
      throw InputError(mark_of(defaults, path), "defaults", "expected a list of recipe paths");
    for (const auto& item : items) {
      if (!item.IsScalar())
        throw InputError(mark_of(item, path), "defaults", "expected a recipe path");
      load_into(relative_to(path, item.Scalar()), mark_of(item, path), chain, out);
    }
  }
  chain.pop_back();

  std::map<std::string, RawEntry> own;
  flatten(doc, "", path, own);
  if (auto it = own.find("model.hf_config"); it != own.end()) {
    if (!it->second.value.IsScalar())
      throw InputError(it->second.where, "model.hf_config", "expected a path to a config.json");
    expand_hf_config(out, it->second, relative_to(path, it->second.value.Scalar()));
    own.erase(it);
  }
  for (auto& [k, v] : own) out[k] = v;
}

}  // namespace

RawConfig load_raw_config(const std::string& path) {
  RawConfig config;
  config.path = path;
  std::vector<std::string> chain;
  load_into(path, SourceLoc{}, chain, config.entries);
  return config;
}

void apply_override(RawConfig& config, const std::string& assignment) {
  const SourceLoc where{"command line", 0, 0};
  const std::size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError(where, assignment, "overrides are written key=value, e.g. train.micro_batch_size=8");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  for (char c : key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'))
      throw InputError(where, key, "a key is dotted names of letters, digits and '_'");
  }
  if (key == "defaults") throw InputError(where, key, "defaults can only be set inside a recipe file");
  if (text.empty()) throw InputError(where, key, "missing value after '='");

  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception&) {
    value = YAML::Node(text);  // not valid YAML on its own: take it as a plain string
  }
  if (value.IsMap()) throw InputError(where, key, "override one key at a time (got a mapping)");
  RawEntry entry{value, where, true};
  if (key == "model.hf_config") {
    if (!value.IsScalar()) throw InputError(where, key, "expected a path to a config.json");
    expand_hf_config(config.entries, entry, value.Scalar());
    return;
  }
  config.entries[key] = entry;
}

}  // namespace llmlab
