// train: train a decoder-only transformer on packed shards from a YAML recipe.
#include <iostream>
#include <string>
#include <vector>

#include "tools/train_main.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return llmlab::train_main(args, std::cout, std::cerr);
}
