// AtomicFile: the target changes only at commit(), and no temporary survives a failure.
#include <doctest/doctest.h>

#include <string>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "test_shard_support.hpp"

using namespace llmlab;
using llmlab::test::ScratchDir;

TEST_CASE("atomic file: commit writes the target and leaves no temporary") {
  ScratchDir dir("atomic");
  const auto target = dir.path("state.json");
  {
    AtomicFile f(target);
    CHECK(f.temp_path() != target);
    f.write("hello ");
    f.write(std::string("world"));
    CHECK(f.size() == 11);
    CHECK_FALSE(std::filesystem::exists(target));  // invisible until commit
    f.commit();
    CHECK_FALSE(f.is_open());
    CHECK_THROWS_AS(f.write("more"), Error);
    CHECK_THROWS_AS(f.commit(), Error);
  }
  CHECK(test::read_bytes(target) == "hello world");
  CHECK(dir.files() == std::set<std::string>{"state.json"});
}

TEST_CASE("atomic file: destruction without commit keeps the old target") {
  ScratchDir dir("atomic");
  const auto target = dir.path("ckpt.bin");
  test::write_bytes(target, "old contents");
  {
    AtomicFile f(target);
    f.write(std::string(3 << 20, 'n'));  // past the buffer, so bytes reached the temporary
    CHECK(std::filesystem::exists(f.temp_path()));
  }
  CHECK(test::read_bytes(target) == "old contents");
  CHECK(dir.files() == std::set<std::string>{"ckpt.bin"});

  AtomicFile g(target);
  g.write("x");
  g.discard();
  g.discard();  // idempotent
  CHECK(dir.files() == std::set<std::string>{"ckpt.bin"});
}

TEST_CASE("atomic file: replaces an existing target") {
  ScratchDir dir("atomic");
  const auto target = dir.path("manifest.json");
  test::write_bytes(target, "version 1, much longer than what replaces it");
  write_file_atomic(target, "v2");
  CHECK(test::read_bytes(target) == "v2");
  write_file_atomic(target, "");
  CHECK(test::read_bytes(target).empty());
  CHECK(dir.files() == std::set<std::string>{"manifest.json"});
}

TEST_CASE("atomic file: write_at and read_at patch and read back written bytes") {
  ScratchDir dir("atomic");
  const auto target = dir.path("patched.bin");
  AtomicFile f(target);
  f.write("HEADER??");
  const std::string body(5 << 20, 'b');  // spans several buffer flushes
  f.write(body);
  f.write("tail");
  f.write_at(6, "OK", 2);
  char back[8] = {};
  f.read_at(0, back, 8);
  CHECK(std::string(back, 8) == "HEADEROK");
  f.read_at(f.size() - 4, back, 4);
  CHECK(std::string(back, 4) == "tail");
  CHECK_THROWS_AS(f.write_at(f.size() - 1, "xy", 2), Error);
  CHECK_THROWS_AS(f.read_at(f.size(), back, 1), Error);
  f.commit();
  const auto bytes = test::read_bytes(target);
  CHECK(bytes.size() == 8 + body.size() + 4);
  CHECK(bytes.substr(0, 8) == "HEADEROK");
  CHECK(bytes.substr(bytes.size() - 4) == "tail");
}

TEST_CASE("atomic file: moving transfers ownership of the temporary") {
  ScratchDir dir("atomic");
  AtomicFile a(dir.path("moved.txt"));
  a.write("payload");
  AtomicFile b(std::move(a));
  CHECK_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  AtomicFile c(dir.path("other.txt"));
  c = std::move(b);  // drops other.txt's temporary, takes moved.txt's
  c.commit();
  CHECK(test::read_bytes(dir.path("moved.txt")) == "payload");
  CHECK(dir.files() == std::set<std::string>{"moved.txt"});
}

TEST_CASE("atomic file: a missing directory is an error naming the path and the reason") {
  ScratchDir dir("atomic");
  const auto target = dir.path("no/such/dir/file.bin");
  try {
    AtomicFile f(target);
    FAIL("expected an Error");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find(target) != std::string::npos);
    CHECK(what.find("No such file or directory") != std::string::npos);
  }
}

TEST_CASE("atomic file: a full disk throws and leaves neither temporary nor partial target") {
  ScratchDir dir("atomic");
  const auto target = dir.path("big.bin");
  test::write_bytes(target, "previous");
  const int code = test::run_with_file_limit(64 << 10, dir.path("probe"), [&] {
    try {
      AtomicFile f(target);
      for (int i = 0; i < 128; ++i) f.write(std::string(16 << 10, 'z'));  // 2 MiB: fails at the first flush
      f.commit();
      return 1;  // no error: wrong
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.find(target) == std::string::npos) return 2;
      if (what.find("File too large") == std::string::npos) return 3;
      return 0;
    }
  });
  if (code == test::kCannotLimit || code == test::kForkFailed) {
    MESSAGE("cannot simulate a full disk here (RLIMIT_FSIZE not enforced or fork failed); skipped");
    return;
  }
  CHECK(code == 0);
  CHECK(test::read_bytes(target) == "previous");
  CHECK(dir.files() == std::set<std::string>{"big.bin"});
}
