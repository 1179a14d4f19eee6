// Helpers for the in-process memory-plan tests: run the tool, parse its JSON, check that bad
// input is reported as exactly one "memory-plan: error: " line with exit code 2.
#pragma once

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "tools/memory_plan_main.hpp"

namespace llmlab::test {

namespace fs = std::filesystem;
using nlohmann::json;

inline constexpr std::int64_t kGiB = std::int64_t{1} << 30;

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

inline Result memory_plan(const std::vector<std::string>& args) {
  std::ostringstream out_stream, err_stream;
  const int code = llmlab::memory_plan_main(args, out_stream, err_stream);
  return Result{code, out_stream.str(), err_stream.str()};
}

inline std::string llama2() { return source_path("recipes/llama2/7b_pretrain_8gpu.yaml"); }
inline std::string gpt2() { return source_path("recipes/gpt2/124m_pretrain_cpu.yaml"); }

inline bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Every runnable recipe shipped under recipes/ (models/ and hardware/ are fragments).
inline std::vector<std::string> shipped_recipes() {
  std::vector<std::string> recipes;
  for (const char* dir : {"gpt2", "llama2", "llama3", "qwen3", "moonlight", "kimi-vl", "tiny"})
    for (const auto& entry : fs::directory_iterator(source_path(std::string("recipes/") + dir)))
      if (entry.path().extension() == ".yaml") recipes.push_back(entry.path().string());
  std::sort(recipes.begin(), recipes.end());
  return recipes;
}

inline json parse_json(const Result& r) {
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  json j;
  REQUIRE_NOTHROW(j = json::parse(r.out));
  return j;
}

// Runs `args` plus --json, expecting success.
inline json plan_of(std::vector<std::string> args) {
  args.push_back("--json");
  const Result r = memory_plan(args);
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  return parse_json(r);
}

inline std::int64_t i64(const json& j) { return j.get<std::int64_t>(); }

// Bad input: exit 2, nothing on stdout, exactly one newline-terminated line on stderr that
// starts with "memory-plan: error: ".
inline void check_input_error(const Result& r) {
  INFO("stderr: [" << r.err << "]");
  CHECK(r.code == 2);
  CHECK(r.out.empty());
  CHECK(lines_of(r.err).size() == 1);
  CHECK(!r.err.empty());
  if (!r.err.empty()) CHECK(r.err.back() == '\n');
  CHECK(starts_with(r.err, "memory-plan: error: "));
}

// CHECK that stderr contains `part`, showing stderr when it does not.
#define CHECK_ERR_HAS(result, part)          \
  do {                                       \
    INFO("stderr: " << (result).err);        \
    CHECK(contains((result).err, (part)));   \
  } while (false)

// A recipe in the temp directory that inherits the llama2 recipe and adds `body`.
inline std::string llama2_variant(const std::string& name, const std::string& body) {
  return write_temp(name, "defaults: [" + llama2() + "]\n" + body);
}

// The line number in "memory-plan: error: FILE:LINE:..." right after `file`, or -1.
inline int reported_line(const std::string& err, const std::string& file) {
  const std::size_t at = err.find(file + ":");
  if (at == std::string::npos) return -1;
  std::size_t i = at + file.size() + 1;
  int line = 0;
  bool any = false;
  while (i < err.size() && err[i] >= '0' && err[i] <= '9') {
    line = line * 10 + (err[i] - '0');
    any = true;
    ++i;
  }
  return any ? line : -1;
}


}  // namespace llmlab::test
