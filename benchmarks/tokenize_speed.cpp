// Tokenizer throughput on one thread: each file is one document, encoded whole; after a
// warm-up pass (which fills the pre-token cache, as the reference's own cache is warm too),
// the median of several passes. Run by scripts/bench-tokenize.sh next to the Hugging Face
// library on the same files (scripts/tokenizer-parity/bench_reference.js).
// Usage: tokenize-speed TOKENIZER REPEATS FILE...   (TOKENIZER: tokenizer.json[.gz], or "byte")
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <iterator>

#include "bench/timing.hpp"
#include "core/error.hpp"
#include "data/tokenizer/tokenizer.hpp"

using namespace llmlab;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: tokenize-speed TOKENIZER REPEATS FILE...\n";
    return 2;
  }
  try {
    const std::string spec = argv[1];
    const auto tokenizer = spec == "byte" ? make_byte_tokenizer() : load_hf_tokenizer(spec);
    const int repeats = std::stoi(argv[2]);
    std::vector<std::string> docs;
    std::size_t bytes = 0;
    for (int i = 3; i < argc; ++i) {
      std::ifstream in(argv[i], std::ios::binary);
      if (!in) throw InputError(SourceLoc{argv[i]}, "", "cannot open");
      docs.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      bytes += docs.back().size();
    }
    std::size_t tokens = 0;
    std::vector<std::int32_t> ids;
    const Timing t = measure(
        [&] {
          tokens = 0;
          for (const std::string& doc : docs) {
            ids.clear();
            tokenizer->encode(doc, ids);
            tokens += ids.size();
          }
        },
        1, repeats);
    const double mb = static_cast<double>(bytes) / 1e6;
    fmt::print("{:.2f} MB/s (median of {}; {:.2f}..{:.2f}), {} documents, {} bytes, {} tokens\n", mb / t.median_s,
               repeats, mb / t.max_s, mb / t.min_s, docs.size(), bytes, tokens);
    return 0;
  } catch (const Error& e) {
    std::cerr << "tokenize-speed: error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::cerr << "tokenize-speed: error: " << e.what() << "\n";
    return 1;
  }
}
