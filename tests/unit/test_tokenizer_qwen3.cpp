// The shipped Qwen3 tokenizer.json.gz against the ids the Hugging Face tokenizers library gave
// for every string of tests/data/tokenizers/qwen3_known_ids.jsonl (many scripts, emoji, digit
// and whitespace runs, code, special tokens, NFC cases, random Unicode), offline. Also decode,
// identity, and encoding from two threads at once.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "data/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

using namespace llmlab;
using Ids = std::vector<std::int32_t>;

namespace {

struct Known {
  std::string text;
  Ids ids;
  std::string decoded;
};

const Tokenizer& qwen3() {
  static const auto tok = load_hf_tokenizer(test::source_path("tests/data/tokenizers/qwen3-tokenizer.json.gz"));
  return *tok;
}

const std::vector<Known>& known() {
  static const std::vector<Known> all = [] {
    std::vector<Known> out;
    std::ifstream in(test::source_path("tests/data/tokenizers/qwen3_known_ids.jsonl"));
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line);
      out.push_back({j.at("text").get<std::string>(), j.at("ids").get<Ids>(), j.at("decoded").get<std::string>()});
    }
    return out;
  }();
  return all;
}

// "line N: first difference at index I (ours X, reference Y)" for a failing comparison.
std::string first_difference(std::size_t line, const Ids& ours, const Ids& ref) {
  std::size_t i = 0;
  while (i < ours.size() && i < ref.size() && ours[i] == ref[i]) ++i;
  return fmt::format("line {}: first difference at index {} (ours {}, reference {}; lengths {} and {})", line + 1, i,
                     i < ours.size() ? std::to_string(ours[i]) : "end", i < ref.size() ? std::to_string(ref[i]) : "end",
                     ours.size(), ref.size());
}

}  // namespace

TEST_CASE("qwen3 ids equal the Hugging Face ids for every known string") {
  REQUIRE(known().size() >= 400);
  std::size_t equal = 0;
  for (std::size_t i = 0; i < known().size(); ++i) {
    const Ids ours = qwen3().encode(known()[i].text);
    if (ours == known()[i].ids)
      ++equal;
    else
      FAIL_CHECK(first_difference(i, ours, known()[i].ids));
  }
  CHECK(equal == known().size());
}

TEST_CASE("qwen3 decode gives the text the Hugging Face decoder gives") {
  for (std::size_t i = 0; i < known().size(); ++i) {
    CAPTURE(i + 1);
    // The reference's decoded text is the NFC form of the input; for these strings that is
    // the input itself wherever it is plain ASCII.
    CHECK(qwen3().decode(known()[i].ids) == known()[i].decoded);
    const std::string& t = known()[i].text;
    if (std::all_of(t.begin(), t.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
      CHECK(qwen3().decode(qwen3().encode(t)) == t);
  }
}

TEST_CASE("qwen3 vocabulary size special tokens and identity") {
  CHECK(qwen3().vocab_size() == 151669);
  CHECK(qwen3().special_token("<|im_start|>") == 151644);
  CHECK(qwen3().special_token("<|endoftext|>") == 151643);
  CHECK(qwen3().special_token("</think>") == 151668);
  CHECK_FALSE(qwen3().special_token("<|eot_id|>").has_value());
  // xxh64 of the decompressed file: the identity does not depend on the compression.
  CHECK(qwen3().identity() == "tokenizer.json xxh64:7bf5ba6cfb7c8a05");
  CHECK_THROWS_WITH_AS(qwen3().decode(Ids{151669}), doctest::Contains("151669"), InputError);
  CHECK_THROWS_AS(qwen3().encode("bad \xff byte"), InputError);
}

TEST_CASE("encoding from two threads at once gives the same ids") {
  const auto byte = make_byte_tokenizer();
  for (const Tokenizer* tok : {&qwen3(), static_cast<const Tokenizer*>(byte.get())}) {
    std::vector<Ids> expected;
    for (const Known& k : known()) expected.push_back(tok->encode(k.text));
    std::vector<std::vector<Ids>> got(2);
    std::vector<std::thread> threads;
    for (auto& out : got)
      threads.emplace_back([&, tok] {
        for (int pass = 0; pass < 3; ++pass) {
          out.clear();
          for (const Known& k : known()) out.push_back(tok->encode(k.text));
        }
      });
    for (auto& t : threads) t.join();
    CHECK(got[0] == expected);
    CHECK(got[1] == expected);
  }
}
