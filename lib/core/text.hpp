// Small text helpers: edit distance for "did you mean" suggestions, splitting, joining.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llmlab {

// Levenshtein distance (insert, delete, substitute each cost 1).
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`, or "" when none is close enough to be a plausible typo
// (distance at most a third of the longer word, and at least one character shared).
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

// `text` with control characters escaped ("\\n", "\\t", "\\x01"), so an error quoting user
// input stays on one line.
std::string single_line(std::string_view text);

std::vector<std::string> split(std::string_view text, char sep);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
// `text` without leading and trailing spaces and tabs.
std::string trim(std::string_view text);

}  // namespace llmlab
