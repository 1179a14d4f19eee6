// Formatting of error locations.
#include "core/error.hpp"

#include <fmt/format.h>

namespace llmlab {

std::string SourceLoc::str() const {
  if (file.empty()) return {};
  if (line <= 0) return file;
  if (column <= 0) return fmt::format("{}:{}", file, line);
  return fmt::format("{}:{}:{}", file, line, column);
}

static std::string located(const SourceLoc& where, const std::string& key,
                           const std::string& problem) {
  std::string out;
  if (where.known()) out += where.str() + ": ";
  if (!key.empty()) out += key + ": ";
  return out + problem;
}

InputError::InputError(const SourceLoc& where, const std::string& key, const std::string& problem)
    : Error(located(where, key, problem), ExitCode::bad_input) {}

}  // namespace llmlab
