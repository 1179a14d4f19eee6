// What every tool's main shares: parse argv with CLI11, run the body, and turn every error into
// one "<tool>: error: ..." line and the exit code of its kind (2 bad input, 1 failure).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace llmlab {

int run_cli(CLI::App& app, const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
            const std::function<int()>& body);

}  // namespace llmlab
