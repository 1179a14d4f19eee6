// pack-data: tokenize datasets and pack them into rmpad training shards.
#include <iostream>
#include <string>
#include <vector>

#include "tools/pack_data_main.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return llmlab::pack_data_main(args, std::cout, std::cerr);
}
