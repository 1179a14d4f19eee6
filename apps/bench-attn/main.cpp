// bench-attn: naive vs FlashAttention-style attention, timed and checked, on cpu or cuda.
#include <iostream>
#include <string>
#include <vector>

#include "tools/bench_attn_main.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return llmlab::bench_attn_main(args, std::cout, std::cerr);
}
