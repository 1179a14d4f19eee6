// Shard writer and reader: exact round trips at both token widths, the writer's row checks, and
// atomic replacement (old file kept, no temporaries) on abandonment and on a full disk.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "data/shard/shard_reader.hpp"
#include "data/shard/shard_writer.hpp"
#include "test_shard_support.hpp"

using namespace llmlab;
using llmlab::test::ScratchDir;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void round_trip(std::uint64_t vocab, std::uint8_t expected_width, std::uint32_t packing_length, int rows) {
  ScratchDir dir("shard");
  const auto path = dir.path("data.shard");
  test::TestRng rng{vocab * 31 + packing_length};
  std::vector<PackedRow> written;
  ShardWriter writer(path, packing_length, vocab, "byte-level-v1");
  std::uint64_t tokens = 0, docs = 0;
  for (int i = 0; i < rows; ++i) {
    written.push_back(test::random_row(rng, packing_length, vocab));
    writer.add(written.back());
    tokens += written.back().tokens.size();
    docs += written.back().docs.size();
  }
  const auto info = writer.finish();
  CHECK(info.token_bytes == expected_width);
  CHECK(info.rows == static_cast<std::uint64_t>(rows));
  CHECK(info.tokens == tokens);
  CHECK(info.docs == docs);
  CHECK(dir.files() == std::set<std::string>{"data.shard"});

  const ShardReader reader(path);
  const auto& got = reader.info();
  CHECK(got.version == 1);
  CHECK(got.token_bytes == expected_width);
  CHECK(got.packing_length == packing_length);
  CHECK(got.vocab_size == vocab);
  CHECK(got.rows == info.rows);
  CHECK(got.docs == docs);
  CHECK(got.tokens == tokens);
  CHECK(got.tokenizer == "byte-level-v1");
  const auto layout = shard_layout(got);
  REQUIRE(layout.has_value());
  CHECK(layout->file_bytes == std::filesystem::file_size(path));
  // Random access, in an order unrelated to the writing order.
  for (int k = 0; k < rows; ++k) {
    const auto i = static_cast<std::size_t>((static_cast<std::uint64_t>(k) * 7919) % static_cast<std::uint64_t>(rows));
    INFO("row " << i);
    CHECK(test::same_row(reader.row(i), written[i]));
  }
  CHECK_THROWS_AS(reader.row(info.rows), Error);
}

PackedRow make_row(std::vector<std::int32_t> tokens, std::vector<PackedDoc> docs) {
  PackedRow row;
  row.loss_mask.assign(tokens.size(), 1);
  row.tokens = std::move(tokens);
  row.docs = std::move(docs);
  return row;
}

}  // namespace

TEST_CASE("shard round trip with 2-byte tokens") {
  round_trip(1000, 2, 64, 300);
  round_trip(65536, 2, 17, 100);  // the largest vocabulary that still fits 16 bits
}

TEST_CASE("shard round trip with 4-byte tokens") {
  round_trip(65537, 4, 64, 300);
  round_trip(std::uint64_t{1} << 31, 4, 9, 100);  // ids up to INT32_MAX
}

TEST_CASE("shard round trip of a large row set streams through the scratch files") {
  round_trip(50257, 2, 2048, 2000);  // ~2 M tokens: several 1 MiB buffer flushes per stream
}

TEST_CASE("shard with no rows is valid") {
  ScratchDir dir("shard");
  const auto path = dir.path("empty.shard");
  ShardWriter writer(path, 128, 32000, "");
  const auto info = writer.finish();
  CHECK(info.rows == 0);
  const ShardReader reader(path);
  CHECK(reader.rows() == 0);
  CHECK(reader.info().tokenizer.empty());
}

TEST_CASE("shard writer rejects invalid rows and stays usable") {
  ScratchDir dir("shard");
  const auto path = dir.path("checked.shard");
  ShardWriter writer(path, 8, 100, "t");
  const auto rejects = [&](const PackedRow& row, const std::string& problem) {
    const auto what = error_of([&] { writer.add(row); });
    INFO(what);
    CHECK(contains(what, path));
    CHECK(contains(what, problem));
    CHECK_THROWS_AS(writer.add(row), InputError);
  };
  rejects(make_row({1, 2, 100}, {{3, 0}}), "outside the vocabulary");
  rejects(make_row({1, -2, 3}, {{3, 0}}), "outside the vocabulary");
  rejects(make_row({1, 2, 3}, {{2, 0}}), "sum to 2");
  rejects(make_row({1, 2, 3}, {{3, 0}, {0, 0}}), "document 1 is empty");
  rejects(make_row({1, 2, 3, 4, 5, 6, 7, 8, 9}, {{9, 0}}), "exceed packing_length 8");
  rejects(make_row({}, {}), "no documents");
  rejects(make_row({1}, {{1, 0x7fffffffu}}), "beyond int32");
  auto short_mask = make_row({1, 2}, {{2, 0}});
  short_mask.loss_mask.pop_back();
  rejects(short_mask, "loss_mask has 1 entries");
  auto wide_mask = make_row({1, 2}, {{2, 0}});
  wide_mask.loss_mask[0] = 2;
  rejects(wide_mask, "not 0 or 1");

  const auto good = make_row({1, 2, 3, 4, 5, 6, 7, 99}, {{5, 0}, {3, 12}});
  writer.add(good);
  CHECK(writer.finish().rows == 1);
  CHECK(test::same_row(ShardReader(path).row(0), good));
  CHECK_THROWS_AS(writer.add(good), Error);
  CHECK_THROWS_AS(writer.finish(), Error);
}

TEST_CASE("shard writer rejects bad parameters") {
  ScratchDir dir("shard");
  CHECK_THROWS_AS(ShardWriter(dir.path("a"), 0, 100, ""), InputError);
  CHECK_THROWS_AS(ShardWriter(dir.path("a"), 8, 0, ""), InputError);
  CHECK_THROWS_AS(ShardWriter(dir.path("a"), 8, (std::uint64_t{1} << 31) + 1, ""), InputError);
  CHECK_THROWS_AS(ShardWriter(dir.path("a"), 8, 100, std::string(70000, 't')), InputError);
  const auto missing = dir.path("missing/dir/a.shard");
  const auto what = error_of([&] { ShardWriter w(missing, 8, 100, ""); });
  CHECK(contains(what, missing));
  CHECK(contains(what, "No such file or directory"));
  CHECK(dir.files().empty());
}

TEST_CASE("shard writer destroyed without finish leaves the old file and no temporaries") {
  ScratchDir dir("shard");
  const auto path = dir.path("keep.shard");
  test::write_bytes(path, "an older shard");
  {
    ShardWriter writer(path, 4096, 32000, "byte-level-v1");
    test::TestRng rng{7};
    for (int i = 0; i < 1000; ++i) writer.add(test::random_row(rng, 4096, 32000));  // ~4 MB, flushed to disk
    CHECK(dir.files().size() == 4);  // the target plus the shard's temporary and two scratch files
  }
  CHECK(test::read_bytes(path) == "an older shard");
  CHECK(dir.files() == std::set<std::string>{"keep.shard"});
}

TEST_CASE("shard finish replaces an existing file") {
  ScratchDir dir("shard");
  const auto path = dir.path("replace.shard");
  test::write_bytes(path, "stale");
  ShardWriter writer(path, 16, 500, "x");
  writer.add(make_row({4, 5, 6}, {{3, 0}}));
  writer.finish();
  CHECK(ShardReader(path).rows() == 1);
  CHECK(dir.files() == std::set<std::string>{"replace.shard"});
}

// A limit below the data fails during add() once a buffer flushes; a limit above the tokens but
// below the whole file fails inside finish(). Either way: an Error naming the shard, the old
// file intact, no temporaries.
TEST_CASE("shard writer on a full disk throws and leaves nothing behind") {
  struct Case {
    std::uint64_t limit;
    int rows;
    bool fails_in_finish;
  };
  for (const auto c : {Case{256 << 10, 2000, false}, Case{16 << 10, 40, true}}) {
    ScratchDir dir("shard");
    const auto path = dir.path("full.shard");
    test::write_bytes(path, "previous shard");
    const int code = test::run_with_file_limit(c.limit, dir.path("probe"), [&] {
      bool finishing = false;
      try {
        ShardWriter writer(path, 1024, 32000, "byte-level-v1");
        test::TestRng rng{11};
        for (int i = 0; i < c.rows; ++i) writer.add(test::random_row(rng, 1024, 32000));
        finishing = true;
        writer.finish();
        return 1;
      } catch (const InputError&) {
        return 4;  // a full disk is not bad input
      } catch (const Error& e) {
        const std::string what = e.what();
        if (!contains(what, path)) return 2;
        if (!contains(what, "File too large")) return 3;
        return finishing == c.fails_in_finish ? 0 : 5;
      }
    });
    if (code == test::kCannotLimit || code == test::kForkFailed) {
      MESSAGE("cannot simulate a full disk here (RLIMIT_FSIZE not enforced or fork failed); skipped");
      return;
    }
    INFO("limit " << c.limit << " rows " << c.rows);
    CHECK(code == 0);
    CHECK(test::read_bytes(path) == "previous shard");
    CHECK(dir.files() == std::set<std::string>{"full.shard"});
  }
}
