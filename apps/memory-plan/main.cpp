// memory-plan: per-rank memory and compute of a recipe before launching it.
#include <iostream>
#include <string>
#include <vector>

#include "tools/memory_plan_main.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return llmlab::memory_plan_main(args, std::cout, std::cerr);
}
