// The one error type the library throws, with the context a user needs to fix the input:
// where (file:line:column), which key, and what. Apps catch once, print one line, exit.
#pragma once

#include <stdexcept>
#include <string>

namespace llmlab {

// A position in a user-supplied file (1-based), or a command-line override.
struct SourceLoc {
  std::string file;  // path as the user wrote it, or "<command line>"
  int line = 0;      // 0 when unknown
  int column = 0;

  bool known() const { return !file.empty(); }
  // "file:line:column", "file" when the line is unknown, "" when nothing is known.
  std::string str() const;
};

// Exit codes shared by every tool.
enum class ExitCode : int { ok = 0, failure = 1, bad_input = 2 };

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, ExitCode code = ExitCode::failure)
      : std::runtime_error(what), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// Bad user input (recipe, override, data file). The message reads
// "file:line:col: key: problem" so editors and terminals can jump to it.
class InputError : public Error {
 public:
  InputError(const SourceLoc& where, const std::string& key, const std::string& problem);
  explicit InputError(const std::string& problem) : Error(problem, ExitCode::bad_input) {}
};

}  // namespace llmlab
