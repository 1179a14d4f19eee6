// load_hf_tokenizer on small tokenizer.json files written by the test: a minimal valid
// byte-level BPE (merges, added tokens, decode), then each unsupported or corrupt variant,
// which must be an InputError naming the file and the offending field or position.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "data/tokenizer/byte_unicode.hpp"
#include "data/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

using namespace llmlab;
using nlohmann::json;
using Ids = std::vector<std::int32_t>;

namespace {

std::string utf8(char32_t c) {
  std::string out;
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
  return out;
}

// Bytes are ids 0..255; merges build "hello" (ids 256..259); <|end|> is added as 260.
json minimal() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[utf8(tok::byte_to_unicode(static_cast<std::uint8_t>(b)))] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {{{"id", 260}, {"content", "<|end|>"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
         {"normalized", false}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", {"h e", "l l", json::array({"he", "ll"}), "hell o"}}}},
  };
}

json patched(json j, const json& patch) {
  j.merge_patch(patch);
  return j;
}

std::string write(const std::string& name, const std::string& text) { return test::write_temp("tokenizers/" + name, text); }

// Loading `j` fails with an InputError whose message has the file name and `needle`.
void check_refused(const std::string& name, const json& j, const std::string& needle) {
  const std::string path = write(name + ".json", j.dump(2));
  CAPTURE(name);
  CHECK_THROWS_WITH_AS(load_hf_tokenizer(path), doctest::Contains((path + ": " + needle).c_str()), InputError);
}

}  // namespace

TEST_CASE("a minimal byte-level BPE tokenizer.json loads and encodes") {
  const auto tok = load_hf_tokenizer(write("minimal.json", minimal().dump()));
  CHECK(tok->vocab_size() == 261);
  CHECK(tok->encode("hello") == Ids{259});
  CHECK(tok->encode("hello hello") == Ids{259, 32, 259});  // " hello" has no merge with the space
  CHECK(tok->encode("hel") == Ids{256, 108});
  CHECK(tok->encode("<|end|>hello") == Ids{260, 259});
  CHECK(tok->special_token("<|end|>") == 260);
  CHECK(tok->decode(Ids{259, 32, 260, 0xC3, 0xA9}) == "hello <|end|>\xc3\xa9");
  CHECK(tok->identity().starts_with("tokenizer.json xxh64:"));
  CHECK(tok->identity().size() == std::string("tokenizer.json xxh64:").size() + 16);
  CHECK_THROWS_WITH_AS(tok->decode(Ids{261}), doctest::Contains("261"), InputError);
}

TEST_CASE("unsupported tokenizer.json variants name the field") {
  auto with = [](auto edit) {
    json j = minimal();
    edit(j);
    return j;
  };
  check_refused("wordpiece", with([](json& j) { j["model"]["type"] = "WordPiece"; }), "model.type: unsupported model 'WordPiece'");
  check_refused("unigram", with([](json& j) { j["model"]["type"] = "Unigram"; }), "model.type: unsupported model 'Unigram'");
  check_refused("byte-fallback", with([](json& j) { j["model"]["byte_fallback"] = true; }), "model.byte_fallback");
  check_refused("dropout", with([](json& j) { j["model"]["dropout"] = 0.1; }), "model.dropout");
  check_refused("prefix", with([](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }),
                "model.continuing_subword_prefix");
  check_refused("whitespace", with([](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }),
                "pre_tokenizer.type: unsupported pre-tokenizer 'Whitespace'");
  check_refused("metaspace", with([](json& j) { j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Metaspace"}}}}}; }),
                "pre_tokenizer.pretokenizers[0].type: unsupported pre-tokenizer 'Metaspace'");
  const json split = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Isolated"}, {"invert", false}};
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  auto sequence = [&](json first, json second) {
    return with([&](json& j) { j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {first, second}}}; });
  };
  check_refused("bytelevel-first", sequence(byte_level, split), "pre_tokenizer.pretokenizers[0]: ByteLevel must be the last");
  check_refused("no-bytelevel", sequence(split, split), "pre_tokenizer: no ByteLevel step");
  check_refused("removed", sequence(patched(split, {{"behavior", "Removed"}}), byte_level),
                "pre_tokenizer.pretokenizers[0].behavior: unsupported behavior 'Removed'");
  check_refused("invert", sequence(patched(split, {{"invert", true}}), byte_level),
                "pre_tokenizer.pretokenizers[0].invert");
  check_refused("string-pattern", sequence(patched(split, {{"pattern", {{"Regex", nullptr}, {"String", " "}}}}), byte_level),
                "pre_tokenizer.pretokenizers[0].pattern");
  check_refused("bad-regex", sequence(patched(split, {{"pattern", {{"Regex", "(unclosed"}}}}), byte_level),
                "pre_tokenizer.pretokenizers[0].pattern.Regex: regex '(unclosed' does not compile");
  check_refused("lowercase", with([](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }),
                "normalizer.type: unsupported normalizer 'Lowercase'");
  check_refused("nfkc-in-sequence",
                with([](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "NFKC"}}}}}; }),
                "normalizer.normalizers[1].type: unsupported normalizer 'NFKC'");
  check_refused("no-decoder", with([](json& j) { j["decoder"] = nullptr; }), "decoder: unsupported");
  check_refused("truncation", with([](json& j) { j["truncation"] = {{"max_length", 512}}; }), "truncation: unsupported");
  check_refused("merge-result", with([](json& j) { j["model"]["merges"].push_back("q z"); }),
                "model.merges[4]: merge uses 'qz', which is not in model.vocab");
  check_refused("merge-format", with([](json& j) { j["model"]["merges"].push_back("hello"); }),
                "model.merges[4]: merge 'hello' is not two tokens");
  check_refused("missing-byte", with([](json& j) { j["model"]["vocab"].erase(utf8(tok::byte_to_unicode(0))); }),
                "model.vocab: no token for byte 0x00");
  check_refused("bad-id", with([](json& j) { j["model"]["vocab"]["he"] = -3; }), "model.vocab.he: expected a token id");
  check_refused("empty-added", with([](json& j) { j["added_tokens"][0]["content"] = ""; }), "added_tokens[0].content: empty");
  check_refused("not-object", json::array({1, 2}), "expected a JSON object");
}

TEST_CASE("corrupt or missing tokenizer files report file and position") {
  const std::string truncated = write("truncated.json", "{\n  \"model\": {\n    \"type\": \"BPE\",\n    \"vocab\": {\"a\": 0,,\n");
  CHECK_THROWS_WITH_AS(load_hf_tokenizer(truncated), doctest::Contains((truncated + ":4:").c_str()), InputError);
  CHECK_THROWS_WITH_AS(load_hf_tokenizer(truncated), doctest::Contains("invalid JSON"), InputError);
  const std::string gz = write("corrupt.json.gz", std::string("\x1f\x8b\x08\x00garbage that is not deflate", 32));
  CHECK_THROWS_WITH_AS(load_hf_tokenizer(gz), doctest::Contains((gz + ": corrupt gzip data").c_str()), InputError);
  const std::string missing = test::source_path("tests/data/tokenizers/no-such-tokenizer.json");
  CHECK_THROWS_WITH_AS(load_hf_tokenizer(missing), doctest::Contains((missing + ": cannot open").c_str()), InputError);
}
