// Builders of recipe schema fields (integer, number, choice, path, ...): each returns a Field
// that type-checks, range-checks and stores one key and prints it back. Shared by the
// schema's sections (schema.cpp, schema_rl.cpp) so every key reports errors the same way.
#pragma once

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/text.hpp"
#include "core/units.hpp"
#include "recipe/recipe.hpp"
#include "recipe/schema.hpp"

namespace llmlab::fields {

inline constexpr long long kMaxInt = std::numeric_limits<long long>::max();

inline Field blank_field(std::string key, std::string type, std::string doc) {
  Field f;
  f.key = std::move(key);
  f.type = std::move(type);
  f.doc = std::move(doc);
  return f;
}

inline std::string describe(const YAML::Node& v) {
  if (v.IsSequence()) return "a list";
  if (v.IsMap()) return "a mapping";
  if (v.IsNull()) return "nothing";
  return "'" + v.Scalar() + "'";
}

inline void require_scalar(const YAML::Node& v, const SourceLoc& where, const std::string& key, const char* expected) {
  if (!v.IsScalar()) throw InputError(where, key, fmt::format("expected {}, got {}", expected, describe(v)));
}

inline std::string yaml_string(const std::string& s) {
  YAML::Emitter e;
  e << s;
  return e.c_str();
}

template <class Get>
Field integer(std::string key, Get get, long long lo, long long hi, std::string doc) {
  std::string type = hi == kMaxInt ? fmt::format("integer >= {}", lo) : fmt::format("integer in [{}, {}]", lo, hi);
  Field f = blank_field(key, type, std::move(doc));
  f.assign = [key, get, lo, hi](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    require_scalar(v, where, key, "an integer");
    long long x = 0;
    try {
      x = v.as<long long>();
    } catch (const YAML::Exception&) {
      throw InputError(where, key, fmt::format("expected an integer, got {}", describe(v)));
    }
    if (x < lo) throw InputError(where, key, fmt::format("must be >= {} (got {})", lo, x));
    if (x > hi) throw InputError(where, key, fmt::format("must be <= {} (got {})", hi, x));
    get(r) = static_cast<std::remove_reference_t<decltype(get(r))>>(x);
  };
  f.show = [get](const Recipe& r) { return std::to_string(get(const_cast<Recipe&>(r))); };
  return f;
}

template <class Get>
Field number(std::string key, Get get, double lo, double hi, bool hi_open, std::string doc) {
  std::string type = fmt::format("number in [{}, {}{}", lo, hi, hi_open ? ")" : "]");
  if (hi == std::numeric_limits<double>::infinity()) type = fmt::format("number >= {}", lo);
  Field f = blank_field(key, type, std::move(doc));
  f.assign = [key, get, lo, hi, hi_open](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    require_scalar(v, where, key, "a number");
    double x = 0;
    try {
      x = v.as<double>();
    } catch (const YAML::Exception&) {
      throw InputError(where, key, fmt::format("expected a number, got {}", describe(v)));
    }
    if (!std::isfinite(x)) throw InputError(where, key, "must be a finite number");
    if (x < lo) throw InputError(where, key, fmt::format("must be >= {} (got {})", lo, x));
    if (x > hi || (hi_open && x == hi))
      throw InputError(where, key, fmt::format("must be {} {} (got {})", hi_open ? "<" : "<=", hi, x));
    get(r) = x;
  };
  f.show = [get](const Recipe& r) { return fmt::format("{}", get(const_cast<Recipe&>(r))); };
  return f;
}

template <class Get>
Field boolean(std::string key, Get get, std::string doc) {
  Field f = blank_field(key, "true|false", std::move(doc));
  f.assign = [key, get](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    require_scalar(v, where, key, "true or false");
    try {
      get(r) = v.as<bool>();
    } catch (const YAML::Exception&) {
      throw InputError(where, key, fmt::format("expected true or false, got {}", describe(v)));
    }
  };
  f.show = [get](const Recipe& r) { return std::string(get(const_cast<Recipe&>(r)) ? "true" : "false"); };
  return f;
}

template <class Get>
Field text(std::string key, Get get, std::string doc) {
  Field f = blank_field(key, "string", std::move(doc));
  f.assign = [key, get](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    require_scalar(v, where, key, "a string");
    get(r) = v.Scalar();
  };
  f.show = [get](const Recipe& r) { return yaml_string(get(const_cast<Recipe&>(r))); };
  return f;
}

template <class E>
std::vector<std::string> option_names(const std::vector<std::pair<std::string, E>>& options) {
  std::vector<std::string> names;
  for (const auto& o : options) names.push_back(o.first);
  return names;
}

// The option named `text`, or an InputError listing the names (with a guess at a typo).
template <class E>
E parse_choice(const std::string& text, const std::vector<std::pair<std::string, E>>& options, const SourceLoc& where,
               const std::string& key) {
  for (const auto& [name, value] : options)
    if (text == name) return value;
  const std::vector<std::string> names = option_names(options);
  std::string msg = fmt::format("must be one of {} (got '{}')", join(names, "|"), text);
  const std::string guess = closest_match(text, names);
  if (!guess.empty()) msg += fmt::format("; did you mean '{}'?", guess);
  throw InputError(where, key, msg);
}

template <class E, class Get>
Field choice(std::string key, Get get, std::vector<std::pair<std::string, E>> options, std::string doc) {
  const std::string names = join(option_names(options), "|");
  Field f = blank_field(key, "one of " + names, std::move(doc));
  f.assign = [key, get, options, names](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    require_scalar(v, where, key, ("one of " + names).c_str());
    get(r) = parse_choice(v.Scalar(), options, where, key);
  };
  f.show = [get, options](const Recipe& r) {
    const E value = get(const_cast<Recipe&>(r));
    for (const auto& o : options)
      if (o.second == value) return o.first;
    return std::string("?");
  };
  return f;
}

inline std::string show_bytes(std::uint64_t b) {
  if (b != 0 && b % GiB == 0) return fmt::format("{}GiB", b / GiB);
  if (b != 0 && b % MiB == 0) return fmt::format("{}MiB", b / MiB);
  return std::to_string(b);
}

inline std::uint64_t parse_bytes_value(const YAML::Node& v, const SourceLoc& where, const std::string& key) {
  require_scalar(v, where, key, "a byte size such as 80GiB");
  const auto b = parse_bytes(v.Scalar());
  if (!b) throw InputError(where, key, fmt::format("expected a byte size such as 80GiB or 512MB, got {}", describe(v)));
  return *b;
}

template <class Get>
Field bytes(std::string key, Get get, std::string doc) {
  Field f = blank_field(key, "bytes (e.g. 80GiB, 512MB)", std::move(doc));
  f.assign = [key, get](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    using T = std::remove_reference_t<decltype(get(r))>;
    get(r) = static_cast<T>(parse_bytes_value(v, where, key));
  };
  f.show = [get](const Recipe& r) { return show_bytes(static_cast<std::uint64_t>(get(const_cast<Recipe&>(r)))); };
  return f;
}

// Paths in a recipe are relative to the file that names them (the command line: the current
// directory) and are stored absolute, so a printed recipe loads from anywhere.
inline std::string resolve_path(const std::string& path, const SourceLoc& where) {
  namespace fs = std::filesystem;
  fs::path p(path);
  if (p.is_relative() && where.known() && where.file != "command line")
    p = fs::path(where.file).parent_path() / p;
  return fs::absolute(p).lexically_normal().string();
}

// A path, or one of `words` (e.g. "byte") kept as written.
template <class Get>
Field path(std::string key, Get get, std::vector<std::string> words, std::string doc) {
  Field f = blank_field(key, words.empty() ? "path" : "path or " + join(words, "|"), std::move(doc));
  f.assign = [key, get, words](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    require_scalar(v, where, key, "a path");
    if (v.Scalar().empty()) throw InputError(where, key, "expected a path, got an empty string");
    const bool word = std::find(words.begin(), words.end(), v.Scalar()) != words.end();
    get(r) = word ? v.Scalar() : resolve_path(v.Scalar(), where);
  };
  f.show = [get](const Recipe& r) { return yaml_string(get(const_cast<Recipe&>(r))); };
  return f;
}

template <class Get>
Field path_list(std::string key, Get get, std::string doc) {
  Field f = blank_field(key, "list of paths", std::move(doc));
  f.assign = [key, get](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    std::vector<std::string> out;
    auto add = [&](const YAML::Node& item) {
      if (!item.IsScalar() || item.Scalar().empty())
        throw InputError(where, key, fmt::format("expected a path, got {}", describe(item)));
      out.push_back(resolve_path(item.Scalar(), where));
    };
    if (v.IsSequence())
      for (const auto& item : v) add(item);
    else
      add(v);  // a single path is a list of one
    get(r) = out;
  };
  f.show = [get](const Recipe& r) {
    YAML::Emitter e;
    e << YAML::Flow << get(const_cast<Recipe&>(r));
    return std::string(e.c_str());
  };
  return f;
}

// A list of scalars, written as a YAML list or as one comma-separated value (the form a
// command-line override takes: seq_lens=1024,8192); a single value is a list of one.
// `parse` turns one item's text into an element, throwing InputError at `where` for `key`;
// `name` turns an element back into text.
template <class Get, class Parse, class Name>
Field list(std::string key, std::string type, Get get, Parse parse, Name name, std::string doc) {
  Field f = blank_field(key, "list of " + type, std::move(doc));
  f.assign = [key, get, parse](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    std::vector<std::string> items;
    if (v.IsSequence()) {
      for (const auto& item : v) {
        require_scalar(item, where, key, "a list of values");
        items.push_back(item.Scalar());
      }
    } else {
      require_scalar(v, where, key, "a list of values");
      for (const auto& item : split(v.Scalar(), ',')) items.push_back(trim(item));
    }
    if (items.empty() || (items.size() == 1 && items[0].empty()))
      throw InputError(where, key, "expected at least one value");
    auto& out = get(r);
    out.clear();
    for (const auto& item : items) out.push_back(parse(item, where, key));
  };
  f.show = [get, name](const Recipe& r) {
    std::string s;
    for (const auto& e : get(const_cast<Recipe&>(r))) s += (s.empty() ? "" : ", ") + std::string(name(e));
    return "[" + s + "]";
  };
  return f;
}

// A member of the Recipe being bound, e.g. AT(train.steps).
#define AT(member) [](Recipe& r) -> auto& { return r.member; }

}  // namespace llmlab::fields
