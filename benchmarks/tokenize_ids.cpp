// Prints the token ids of each string in a JSON-lines file, one JSON array per line: the
// llmlab side of tests/cli/tokenizer_parity.sh, compared line by line with the Hugging Face
// tokenizers library (scripts/tokenizer-parity/reference_ids.js prints the same format).
// Usage: tokenize-ids TOKENIZER STRINGS.jsonl   (TOKENIZER: a tokenizer.json[.gz], or "byte")
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>

#include "core/error.hpp"
#include "data/tokenizer/tokenizer.hpp"

using namespace llmlab;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: tokenize-ids TOKENIZER STRINGS.jsonl  (TOKENIZER: tokenizer.json[.gz] or byte)\n";
    return 2;
  }
  try {
    const std::string spec = argv[1];
    const auto tokenizer = spec == "byte" ? make_byte_tokenizer() : load_hf_tokenizer(spec);
    std::ifstream in(argv[2]);
    if (!in) throw InputError(SourceLoc{argv[2]}, "", "cannot open");
    std::string line, out;
    std::vector<std::int32_t> ids;
    for (int number = 1; std::getline(in, line); ++number) {
      nlohmann::json text;
      try {
        text = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw InputError(SourceLoc{argv[2], number}, "", e.what());
      }
      if (!text.is_string()) throw InputError(SourceLoc{argv[2], number}, "", "expected a JSON string");
      ids.clear();
      tokenizer->encode(text.get_ref<const std::string&>(), ids);
      out = fmt::format("[{}]\n", fmt::join(ids, ","));
      std::cout << out;
    }
    return 0;
  } catch (const Error& e) {
    std::cerr << "tokenize-ids: error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  }
}
