// JSONL problem sets: a line-by-line loader with file:line:key errors, and an atomic writer for
// problem sets and for the prompt/completion SFT records pack-data reads.
#include "rl/problem_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/text.hpp"

namespace llmlab {

namespace {

using nlohmann::json;

bool blank(std::string_view line) { return line.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos; }

// The parser's own words without its "[json.exception...] parse error at line 1, column 8: "
// preamble (the line is ours to report; the column goes into the location).
std::string parser_reason(const json::parse_error& e) {
  const std::string what = e.what();
  const auto column = what.find(", column ");
  const auto colon = column == std::string::npos ? std::string::npos : what.find(": ", column);
  return colon == std::string::npos ? what : what.substr(colon + 2);
}

// The field `key` of `obj` as a string; numbers (when allowed) as their JSON text.
std::string text_field(const json& obj, const char* key, const SourceLoc& where, bool numbers_ok) {
  const auto it = obj.find(key);
  if (it == obj.end())
    throw InputError(where, key, numbers_ok ? "missing (a string or number is required)" : "missing (a string is required)");
  if (it->is_string()) return it->get<std::string>();
  if (numbers_ok && it->is_number()) return it->dump();
  throw InputError(where, key,
                   fmt::format("expected a {}, got {}", numbers_ok ? "string or number" : "string", it->type_name()));
}

Problem parse_line(const std::string& text, const SourceLoc& where) {
  json obj;
  try {
    obj = json::parse(text);
  } catch (const json::parse_error& e) {
    SourceLoc at = where;
    at.column = static_cast<int>(std::min<std::size_t>(e.byte == 0 ? 1 : e.byte, text.size() + 1));
    throw InputError(at, "", "malformed JSON: " + parser_reason(e));
  }
  if (!obj.is_object()) throw InputError(where, "", fmt::format("expected a JSON object, got {}", obj.type_name()));

  Problem p;
  p.prompt = text_field(obj, "prompt", where, false);
  p.answer = text_field(obj, "answer", where, true);
  if (const auto it = obj.find("difficulty"); it != obj.end()) {
    if (!it->is_number()) throw InputError(where, "difficulty", fmt::format("expected a number, got {}", it->type_name()));
    p.difficulty = it->get<double>();
  }
  if (const auto it = obj.find("id"); it != obj.end()) {
    if (it->is_string())
      p.id = it->get<std::string>();
    else if (it->is_number_integer())
      p.id = it->dump();
    else
      throw InputError(where, "id", fmt::format("expected a string or an integer, got {}", it->type_name()));
    if (p.id.empty()) throw InputError(where, "id", "must not be empty");
  } else {
    p.id = fmt::format("line-{}", where.line);
  }
  return p;
}

}  // namespace

std::vector<Problem> load_problems(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const std::string reason = std::strerror(errno);
    throw InputError(SourceLoc{path, 0, 0}, "", fmt::format("cannot open problem file: {}", reason));
  }
  std::vector<Problem> problems;
  std::unordered_map<std::string, int> first_line;  // id -> line it first appeared on
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (blank(line)) continue;
    const SourceLoc where{path, number, 0};
    Problem p = parse_line(line, where);
    const auto [it, inserted] = first_line.emplace(p.id, number);
    if (!inserted)
      throw InputError(where, "id", fmt::format("duplicate id '{}' (first on line {})", single_line(p.id), it->second));
    problems.push_back(std::move(p));
  }
  if (in.bad()) throw InputError(SourceLoc{path, number, 0}, "", fmt::format("read failed: {}", std::strerror(errno)));
  if (problems.empty()) throw InputError(SourceLoc{path, 0, 0}, "", "no problems");
  return problems;
}

void write_problems(const std::string& path, const std::vector<Problem>& problems, bool with_solution) {
  std::string out;
  for (const Problem& p : problems) {
    nlohmann::ordered_json record;
    if (with_solution) {
      if (p.solution.empty())
        throw Error(fmt::format("{}: problem '{}' has no solution to write as SFT data", path, single_line(p.id)));
      record["prompt"] = p.prompt;
      record["completion"] = p.solution;
    } else {
      record["id"] = p.id;
      record["prompt"] = p.prompt;
      record["answer"] = p.answer;
      record["difficulty"] = p.difficulty;
    }
    try {
      out += record.dump();
    } catch (const json::type_error& e) {  // text that is not valid UTF-8
      throw Error(fmt::format("{}: problem '{}' cannot be written as JSON: {}", path, single_line(p.id), e.what()));
    }
    out += '\n';
  }
  write_file_atomic(path, out);
}

}  // namespace llmlab
