// pack-data's pipeline end to end with the byte-level tokenizer: every document comes back
// exactly, positions restart per document and continue across split chunks, loss masks follow
// the roles, output is deterministic, and bad input names file:line and leaves nothing behind.
#include <doctest/doctest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>
#include <sstream>

#include "data/pack/pack_job.hpp"
#include "data/pack/packer.hpp"
#include "data/shard/shard_reader.hpp"
#include "data/source/document_reader.hpp"
#include "data/source/render.hpp"
#include "data/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

using namespace llmlab;
using llmlab::test::write_temp;
namespace fs = std::filesystem;

namespace {

DataSettings settings_for(const std::string& input, const std::string& output, std::int64_t L = 64) {
  DataSettings s;
  s.inputs = {input};
  s.output = output;
  s.packing_length = L;
  s.pack_window = 7;  // several windows even for small inputs
  s.rows_per_shard = 5;
  return s;
}

std::vector<PackedRow> read_all(const std::string& dir) {
  std::vector<PackedRow> rows;
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".bin") shards.push_back(e.path());
  std::sort(shards.begin(), shards.end());
  for (const auto& p : shards) {
    ShardReader r(p.string());
    for (std::uint64_t i = 0; i < r.rows(); ++i) rows.push_back(r.row(i));
  }
  return rows;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string temp_dir(const std::string& name) { return fs::path(write_temp(name + "/.keep", "")).parent_path().string() + "/out"; }


// (position offset, tokens, loss mask) of every chunk in the output.
using ChunkKey = std::tuple<std::uint32_t, std::vector<std::int32_t>, std::vector<std::uint8_t>>;

std::multiset<ChunkKey> chunks_in(const std::vector<PackedRow>& rows) {
  std::multiset<ChunkKey> out;
  for (const auto& row : rows) {
    std::size_t at = 0;
    for (const auto& d : row.docs) {
      const auto b = static_cast<long>(at), e = static_cast<long>(at + d.length);
      out.insert({d.position_offset, {row.tokens.begin() + b, row.tokens.begin() + e},
                  {row.loss_mask.begin() + b, row.loss_mask.begin() + e}});
      at += d.length;
    }
  }
  return out;
}

// What the output must hold: each rendered document cut into packing_length chunks.
std::multiset<ChunkKey> expected_chunks(const DataSettings& s, const Tokenizer& tok) {
  std::multiset<ChunkKey> out;
  DocumentReader reader(s.inputs, s);
  DocumentRenderer renderer(tok, s);
  RawDocument doc;
  const auto L = static_cast<std::size_t>(s.packing_length);
  while (reader.next(doc)) {
    const TokenizedDoc t = renderer.render(doc);
    for (std::size_t b = 0; b < t.tokens.size(); b += L) {
      const std::size_t e = std::min(t.tokens.size(), b + L);
      out.insert({static_cast<std::uint32_t>(b), {t.tokens.begin() + static_cast<long>(b), t.tokens.begin() + static_cast<long>(e)},
                  {t.loss_mask.begin() + static_cast<long>(b), t.loss_mask.begin() + static_cast<long>(e)}});
    }
  }
  return out;
}

std::string lorem(int i) {
  std::string t;
  for (int k = 0; k <= (i * 37) % 150; ++k) t += static_cast<char>('a' + (i + k) % 26);
  return t;
}

}  // namespace

TEST_CASE("packing then reading gives back every document exactly") {
  std::string jsonl;
  for (int i = 0; i < 40; ++i) jsonl += "{\"text\": \"" + lorem(i) + "\"}\n";
  const std::string input = write_temp("roundtrip.jsonl", jsonl);
  const auto tok = make_byte_tokenizer();
  for (PackStrategy strategy : {PackStrategy::greedy, PackStrategy::bfd, PackStrategy::spfhp}) {
    CAPTURE(pack_strategy_name(strategy));
    DataSettings s = settings_for(input, temp_dir(std::string("roundtrip_") + pack_strategy_name(strategy)));
    s.strategy = strategy;
    const PackStats stats = pack_dataset(s, *tok, "byte", {});
    CHECK(stats.documents == 40);
    CHECK(stats.split > 0);  // some documents exceed 64 tokens and continue in other rows
    const auto rows = read_all(s.output);
    CHECK(rows.size() == stats.rows);
    CHECK(chunks_in(rows) == expected_chunks(s, *tok));
    CHECK(fs::exists(s.output + "/manifest.json"));
  }
}

TEST_CASE("overflow policies truncate and drop") {
  const std::string input = write_temp("overflow.jsonl", "{\"text\": \"" + std::string(100, 'x') + "\"}\n{\"text\": \"short\"}\n");
  const auto tok = make_byte_tokenizer();
  DataSettings s = settings_for(input, temp_dir("overflow_truncate"));
  s.overflow = OverflowPolicy::truncate;
  PackStats st = pack_dataset(s, *tok, "byte", {});
  CHECK(st.truncated == 1);
  CHECK(st.truncated_tokens == 101 - 64);  // 100 x and EOS
  CHECK(st.tokens == 64 + 6);
  s.overflow = OverflowPolicy::drop;
  s.output = temp_dir("overflow_drop");
  st = pack_dataset(s, *tok, "byte", {});
  CHECK(st.dropped == 1);
  CHECK(st.documents == 1);
  CHECK(st.tokens == 6);
}

TEST_CASE("chat and prompt completion records train only on the answers") {
  const std::string input = write_temp(
      "chat.jsonl",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n"
      "{\"prompt\": \"Q\", \"completion\": \"A\"}\n");
  const auto tok = make_byte_tokenizer();
  DataSettings s = settings_for(input, temp_dir("chat"), 128);
  const PackStats st = pack_dataset(s, *tok, "byte", {});
  CHECK(st.documents == 2);
  // chatml: "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n": trained on
  // "yo", <|im_end|> and "\n" (the turn's end) = 4 tokens; prompt/completion: "A" + EOS = 2.
  CHECK(st.loss_tokens == 4 + 2);
  std::uint64_t trained = 0;
  for (const auto& row : read_all(s.output))
    for (auto m : row.loss_mask) trained += m;
  CHECK(trained == 6);
}

TEST_CASE("the output is deterministic for a seed and independent of threads") {
  std::string jsonl;
  for (int i = 0; i < 200; ++i) jsonl += "{\"text\": \"" + lorem(i) + "\"}\n";
  const std::string input = write_temp("determinism.jsonl", jsonl);
  const auto tok = make_byte_tokenizer();
  auto shard_bytes = [&](std::uint64_t seed, std::int64_t threads, const std::string& name) {
    DataSettings s = settings_for(input, temp_dir(name));
    s.seed = seed;
    s.threads = threads;
    s.rows_per_shard = 1000;
    pack_dataset(s, *tok, "byte", {});
    return slurp(s.output + "/shard-00000.bin");
  };
  const std::string a = shard_bytes(1, 1, "det_a"), b = shard_bytes(1, 2, "det_b"), c = shard_bytes(2, 2, "det_c");
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("bad records stop the run with file and line unless skipped") {
  const std::string input =
      write_temp("bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"broken\"\n{\"txet\": \"typo\"}\n{\"text\": \"\"}\n"
                              "{\"input_ids\": [1, 2, 999]}\n{\"text\": \"ok again\"}\n");
  const auto tok = make_byte_tokenizer();
  DataSettings s = settings_for(input, temp_dir("bad"));
  try {
    pack_dataset(s, *tok, "byte", {});
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find(input + ":2:") == 0);
    CHECK(std::string(e.what()).find("malformed JSON") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(s.output));  // nothing partial left behind
  for (const auto& e : fs::directory_iterator(fs::path(s.output).parent_path()))
    CHECK_MESSAGE(e.path().filename().string().find(".tmp-") == std::string::npos, e.path());

  s.skip_bad = true;
  const PackStats st = pack_dataset(s, *tok, "byte", {});
  CHECK(st.documents == 2);
  CHECK(st.bad.at("malformed_json") == 1);
  CHECK(st.bad.at("missing_field") == 1);
  CHECK(st.bad.at("empty_document") == 1);
  CHECK(st.bad.at("token_out_of_vocabulary") == 1);
  CHECK(st.bad_examples.size() == 4);
}

TEST_CASE("invalid UTF-8 in a text file names its line") {
  const std::string input = write_temp("latin1.txt", "line one\nline two \xe9t\xe9\n");
  const auto tok = make_byte_tokenizer();
  DataSettings s = settings_for(input, temp_dir("utf8"));
  try {
    pack_dataset(s, *tok, "byte", {});
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find(input + ":2: invalid UTF-8") == 0);
  }
}

TEST_CASE("text files split on a delimiter") {
  const std::string input = write_temp("fortunes", "first fortune\n%\nsecond\nfortune\n%\nthird\n");
  const auto tok = make_byte_tokenizer();
  DataSettings s = settings_for(input, temp_dir("delim"));
  s.text_delimiter = "\n%\n";
  const PackStats st = pack_dataset(s, *tok, "byte", {});
  CHECK(st.documents == 3);
}

TEST_CASE("an existing directory that is not a pack-data output is refused and kept") {
  const std::string mine = fs::path(write_temp("users_dir/notes.txt", "precious")).parent_path().string();
  const std::string input = write_temp("refuse.jsonl", "{\"text\": \"x\"}\n");
  const auto tok = make_byte_tokenizer();
  DataSettings s = settings_for(input, mine);
  CHECK_THROWS_AS(pack_dataset(s, *tok, "byte", {}), InputError);
  CHECK(slurp(mine + "/notes.txt") == "precious");
  // A previous pack-data output is replaced.
  s.output = temp_dir("replace");
  pack_dataset(s, *tok, "byte", {});
  const std::string first = slurp(s.output + "/manifest.json");
  s.packing_length = 32;
  pack_dataset(s, *tok, "byte", {});
  CHECK(slurp(s.output + "/manifest.json") != first);
}

TEST_CASE("gzip-compressed input packs like the plain file") {
  std::string jsonl;
  for (int i = 0; i < 30; ++i) jsonl += "{\"text\": \"" + lorem(i) + "\"}\n";
  const std::string plain = write_temp("gz/plain.jsonl", jsonl);
  const std::string gz = plain + ".gz";
  gzFile f = gzopen(gz.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, jsonl.data(), static_cast<unsigned>(jsonl.size())) == static_cast<int>(jsonl.size()));
  gzclose(f);
  const auto tok = make_byte_tokenizer();
  DataSettings a = settings_for(plain, temp_dir("gz_plain"));
  DataSettings b = settings_for(gz, temp_dir("gz_gz"));
  pack_dataset(a, *tok, "byte", {});
  pack_dataset(b, *tok, "byte", {});
  CHECK(slurp(a.output + "/shard-00000.bin") == slurp(b.output + "/shard-00000.bin"));
}
