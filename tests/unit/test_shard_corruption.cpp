// The shard reader refuses damaged files with an InputError naming the file and the problem:
// flipped bytes in every section, truncation anywhere, wrong magic or version, inconsistent
// sizes, and (with a recomputed checksum, as a buggy writer would produce) invalid contents.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include <xxhash.h>

#include "core/error.hpp"
#include "data/shard/shard_reader.hpp"
#include "data/shard/shard_writer.hpp"
#include "test_shard_support.hpp"

using namespace llmlab;
using llmlab::test::ScratchDir;

namespace {

// A small valid shard: 3 rows, 6 documents, vocab 1000, packing length 8.
struct Fixture {
  ScratchDir dir{"corrupt"};
  std::string good_path = dir.path("good.shard");
  std::string bad_path = dir.path("bad.shard");
  std::string bytes;
  ShardLayout layout;

  Fixture() {
    ShardWriter writer(good_path, 8, 1000, "byte-level-v1");
    writer.add(row({1, 2, 3, 4, 5}, {{2, 0}, {3, 40}}, {1, 0, 1, 1, 0}));
    writer.add(row({999, 0, 7, 8, 9, 10, 11, 12}, {{1, 0}, {7, 0}}, {1, 1, 1, 1, 1, 1, 1, 1}));
    writer.add(row({13, 14, 15}, {{1, 0}, {2, 100}}, {0, 0, 1}));
    const auto info = writer.finish();
    layout = *shard_layout(info);
    bytes = test::read_bytes(good_path);
    REQUIRE(bytes.size() == layout.file_bytes);
  }

  static PackedRow row(std::vector<std::int32_t> t, std::vector<PackedDoc> d, std::vector<std::uint8_t> m) {
    PackedRow r;
    r.tokens = std::move(t);
    r.docs = std::move(d);
    r.loss_mask = std::move(m);
    return r;
  }

  template <class T>
  void put(std::string& b, std::uint64_t offset, T value) const {
    std::memcpy(b.data() + offset, &value, sizeof value);
  }
  template <class T>
  T get(std::uint64_t offset) const {
    T value;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
  }
  // What a buggy writer would produce: damaged contents under a valid checksum.
  void reseal(std::string& b) const { put<std::uint64_t>(b, layout.footer, XXH64(b.data(), layout.footer, 0)); }

  // Writes `b` to bad.shard and returns the reader's error message (an InputError is required).
  std::string error(const std::string& b) const {
    test::write_bytes(bad_path, b);
    try {
      ShardReader reader(bad_path);
    } catch (const InputError& e) {
      const std::string what = e.what();
      CHECK(what.find(bad_path) != std::string::npos);
      return what;
    } catch (const std::exception& e) {
      FAIL("expected InputError, got: " << e.what());
    }
    FAIL("a damaged shard was accepted");
    return {};
  }
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("shard reader accepts the untouched fixture") {
  Fixture f;
  const ShardReader reader(f.good_path);
  CHECK(reader.rows() == 3);
  CHECK(reader.row(1).tokens.front() == 999);
}

TEST_CASE("shard reader detects a flipped byte in every section") {
  Fixture f;
  struct Where {
    const char* section;
    std::uint64_t offset;
    const char* expected;
  };
  const std::vector<Where> places = {
      {"magic", 3, "wrong magic"},
      {"version", 8, "unsupported format version"},
      {"token width", 12, "token width"},
      {"rows count", 32, "size fields inconsistent"},
      {"tokenizer", kShardFixedHeaderBytes + 2, "checksum mismatch"},
      {"packing length", 17, "checksum mismatch"},
      {"tokens", f.layout.tokens + 5, "checksum mismatch"},
      {"loss mask", f.layout.loss_mask, "checksum mismatch"},
      {"row doc index", f.layout.row_docs + 8, "checksum mismatch"},
      {"docs table", f.layout.docs + 12, "checksum mismatch"},
      {"row offsets", f.layout.row_offsets + 16, "checksum mismatch"},
      {"checksum", f.layout.footer + 1, "checksum mismatch"},
      {"end magic", f.layout.footer + 9, "end magic"},
  };
  for (const auto& p : places) {
    INFO(p.section);
    auto b = f.bytes;
    b[p.offset] = static_cast<char>(b[p.offset] ^ 0x5a);
    const auto what = f.error(b);
    INFO(what);
    CHECK(contains(what, p.expected));
  }
}

TEST_CASE("shard reader detects truncation anywhere") {
  Fixture f;
  const auto& l = f.layout;
  for (const std::uint64_t size : {std::uint64_t{0}, std::uint64_t{5}, std::uint64_t{8}, std::uint64_t{40}, kShardFixedHeaderBytes,
                                   l.tokens, l.tokens + 3, l.loss_mask, l.row_docs + 4, l.docs, l.row_offsets + 8, l.footer,
                                   l.file_bytes - 1}) {
    INFO("truncated to " << size);
    const auto what = f.error(f.bytes.substr(0, static_cast<std::size_t>(size)));
    INFO(what);
    CHECK(contains(what, "truncated"));
  }
}

TEST_CASE("shard reader detects trailing bytes and bad size fields") {
  Fixture f;
  CHECK(contains(f.error(f.bytes + std::string(8, '\0')), "size fields inconsistent with file size"));
  auto b = f.bytes;
  f.put<std::uint64_t>(b, 48, ~std::uint64_t{0});  // tokens count overflowing the layout
  CHECK(contains(f.error(b), "overflow"));
  b = f.bytes;
  f.put<std::uint64_t>(b, 40, f.get<std::uint64_t>(40) + 1);  // one doc more than the file holds
  CHECK(contains(f.error(b), "size fields inconsistent"));
  b = f.bytes;
  f.put<std::uint32_t>(b, 20, 1u << 30);  // tokenizer length field
  CHECK(contains(f.error(b), "tokenizer identity length"));
}

TEST_CASE("shard reader rejects wrong magic and unsupported versions") {
  Fixture f;
  auto b = f.bytes;
  std::memcpy(b.data(), "GGUF\0\0\0\0", 8);
  CHECK(contains(f.error(b), "not an llmlab shard"));
  CHECK(contains(f.error("hello, world: definitely not a shard, but long enough to have a header"), "wrong magic"));
  b = f.bytes;
  f.put<std::uint32_t>(b, 8, 2);
  f.reseal(b);
  CHECK(contains(f.error(b), "unsupported format version 2 (this build reads version 1)"));
}

TEST_CASE("shard reader rejects token ids outside the vocabulary") {
  Fixture f;
  auto b = f.bytes;
  f.put<std::uint16_t>(b, f.layout.tokens + 2 * 6, 1000);  // row 1's second token
  f.reseal(b);
  const auto what = f.error(b);
  CHECK(contains(what, "row 1: token id 1000 is outside the vocabulary (vocab_size 1000)"));
  b = f.bytes;
  f.put<std::uint64_t>(b, 24, 999);  // shrink the vocabulary under the existing id 999
  f.reseal(b);
  CHECK(contains(f.error(b), "token id 999 is outside the vocabulary"));
  b = f.bytes;
  f.put<std::uint64_t>(b, 24, 70000);  // a vocabulary needing 4-byte tokens with 2-byte tokens stored
  f.reseal(b);
  CHECK(contains(f.error(b), "token width 2 bytes does not match vocab_size 70000"));
}

TEST_CASE("shard reader rejects documents that do not add up to their row") {
  Fixture f;
  auto b = f.bytes;
  f.put<std::uint32_t>(b, f.layout.docs + 8 * 1, 4);  // row 0 doc 1: 3 -> 4 tokens
  f.reseal(b);
  CHECK(contains(f.error(b), "row 0: document lengths sum to 6 but the row holds 5 tokens"));
}

TEST_CASE("shard reader rejects empty documents") {
  Fixture f;
  auto b = f.bytes;
  f.put<std::uint32_t>(b, f.layout.docs + 8 * 2, 0);  // row 1 doc 0: 1 -> 0 tokens
  f.put<std::uint32_t>(b, f.layout.docs + 8 * 3, 8);  // row 1 doc 1: 7 -> 8, so the sum still holds
  f.reseal(b);
  CHECK(contains(f.error(b), "row 1: document 0 is empty"));
}

TEST_CASE("shard reader rejects a row longer than packing_length") {
  Fixture f;
  auto b = f.bytes;
  f.put<std::uint32_t>(b, 16, 7);  // packing_length 8 -> 7; row 1 holds 8 tokens
  f.reseal(b);
  CHECK(contains(f.error(b), "row 1 holds 8 tokens, more than packing_length 7"));
}

TEST_CASE("shard reader rejects broken row indexes") {
  Fixture f;
  auto b = f.bytes;
  f.put<std::uint64_t>(b, f.layout.row_docs + 8 * 2, 2);  // row 1 starts and ends at doc 2
  f.reseal(b);
  CHECK(contains(f.error(b), "row 1 has no documents"));
  b = f.bytes;
  f.put<std::uint64_t>(b, f.layout.row_offsets + 8 * 2, 3);  // row 1 would end before it starts
  f.reseal(b);
  CHECK(contains(f.error(b), "out of order"));
  b = f.bytes;
  f.put<std::uint64_t>(b, f.layout.row_offsets + 8 * 3, 15);  // the last offset is not the token count
  f.reseal(b);
  CHECK(contains(f.error(b), "row offsets run from 0 to 15"));
}

TEST_CASE("shard reader rejects nonzero padding and a missing file") {
  Fixture f;
  auto b = f.bytes;
  b[f.layout.loss_mask + 3] = 1;  // 16 tokens fill 2 mask bytes; bytes 2..7 are padding
  f.reseal(b);
  CHECK(contains(f.error(b), "nonzero padding after the loss mask"));
  const auto missing = f.dir.path("missing.shard");
  try {
    ShardReader reader(missing);
    FAIL("opened a missing file");
  } catch (const InputError& e) {
    CHECK(contains(e.what(), missing));
    CHECK(contains(e.what(), "cannot open"));
  }
}
