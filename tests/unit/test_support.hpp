// Helpers shared by unit tests: paths into the source tree and temporary recipe files.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

namespace llmlab::test {

inline std::string source_path(const std::string& relative) { return std::string(LLMLAB_SOURCE_DIR) + "/" + relative; }

// A file under a per-process temporary directory, removed with it at exit of the test run.
inline std::string write_temp(const std::string& name, const std::string& content) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("llmlab-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  const auto path = dir / name;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << content;
  return path.string();
}

}  // namespace llmlab::test
