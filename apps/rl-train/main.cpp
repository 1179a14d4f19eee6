// rl-train: reinforcement learning with verifiable rewards (Kimi k1.5) from a YAML recipe.
#include <iostream>
#include <string>
#include <vector>

#include "tools/rl_train_main.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return llmlab::rl_train_main(args, std::cout, std::cerr);
}
