// CheckpointStore: a step directory appears only complete, old ones are pruned, leftovers of a
// crash are ignored and cleaned, and bad directories fail at once with a clear message.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "model/checkpoint_store.hpp"
#include "test_shard_support.hpp"

using namespace llmlab;
using llmlab::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& entry : fs::directory_iterator(dir)) out.insert(entry.path().filename().string());
  return out;
}

// Saves one checkpoint holding `files` (name -> contents) and returns its directory.
std::string save(CheckpointStore& store, std::int64_t step, const std::map<std::string, std::string>& files) {
  const auto tmp = store.begin(step);
  for (const auto& [name, contents] : files) test::write_bytes(tmp + "/" + name, contents);
  return store.commit(tmp, step);
}

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("checkpoint store: step names are zero padded and parsed strictly") {
  CHECK(checkpoint_step_name(100) == "step_00000100");
  CHECK(checkpoint_step_name(0) == "step_00000000");
  CHECK(checkpoint_step_name(123456789) == "step_123456789");
  CHECK(parse_checkpoint_step_name("step_00000100") == 100);
  CHECK(parse_checkpoint_step_name("step_123456789") == 123456789);
  CHECK_FALSE(parse_checkpoint_step_name("step_100"));  // not canonical
  CHECK_FALSE(parse_checkpoint_step_name("step_"));
  CHECK_FALSE(parse_checkpoint_step_name("step_-0000001"));
  CHECK_FALSE(parse_checkpoint_step_name("step_0000010x"));
  CHECK_FALSE(parse_checkpoint_step_name(".step_00000100.tmp-1"));
  CHECK_THROWS_AS(checkpoint_step_name(-1), Error);
}

TEST_CASE("checkpoint store: commit publishes a complete step and latest finds it") {
  ScratchDir scratch("ckpt");
  const auto run = scratch.path("runs/a");  // created with its parents
  CheckpointStore store(run, 0);
  CHECK_FALSE(store.latest());
  CHECK(store.steps().empty());

  const auto tmp = store.begin(100);
  CHECK(fs::is_directory(tmp));
  CHECK(fs::path(tmp).parent_path() == fs::path(run));
  CHECK(fs::path(tmp).filename().string().rfind(".step_00000100.tmp-", 0) == 0);
  test::write_bytes(tmp + "/model.safetensors", "weights");
  fs::create_directories(tmp + "/optim");
  test::write_bytes(tmp + "/optim/rank0.bin", "moments");
  CHECK_FALSE(store.latest());  // a temporary is never a checkpoint

  const auto path = store.commit(tmp, 100);
  CHECK(path == run + "/step_00000100");
  CHECK_FALSE(fs::exists(tmp));
  CHECK(test::read_bytes(path + "/model.safetensors") == "weights");
  CHECK(test::read_bytes(path + "/optim/rank0.bin") == "moments");
  REQUIRE(store.latest());
  CHECK(store.latest()->first == 100);
  CHECK(store.latest()->second == path);

  save(store, 1000, {{"m", "x"}});
  save(store, 123456789, {{"m", "y"}});  // wider than eight digits: still ordered by number
  CHECK(store.steps() == std::vector<std::int64_t>{100, 1000, 123456789});
  CHECK(store.latest()->first == 123456789);
  CHECK(names_in(run) == std::set<std::string>{"step_00000100", "step_00001000", "step_123456789"});
}

TEST_CASE("checkpoint store: keep_last prunes the oldest checkpoints") {
  ScratchDir scratch("ckpt");
  CheckpointStore store(scratch.path("run"), 2);
  for (const std::int64_t step : {100, 200, 300, 400}) save(store, step, {{"w", std::to_string(step)}});
  CHECK(store.steps() == std::vector<std::int64_t>{300, 400});
  CHECK(names_in(store.dir()) == std::set<std::string>{"step_00000300", "step_00000400"});
  CHECK(test::read_bytes(store.dir() + "/step_00000400/w") == "400");

  // The checkpoint just committed is never the one pruned, even when older ones are newer.
  save(store, 50, {{"w", "50"}});
  CHECK(store.steps() == std::vector<std::int64_t>{50, 400});

  ScratchDir all("ckpt");
  CheckpointStore keep_all(all.path("run"), 0);
  for (const std::int64_t step : {1, 2, 3, 4, 5}) save(keep_all, step, {});
  CHECK(keep_all.steps().size() == 5);
}

TEST_CASE("checkpoint store: a stale temporary directory is ignored and then cleaned") {
  ScratchDir scratch("ckpt");
  const auto run = scratch.path("run");
  {
    CheckpointStore first(run, 3);
    save(first, 100, {{"w", "100"}});
    const auto crashed = first.begin(200);  // the run dies while writing step 200
    test::write_bytes(crashed + "/w", "half");
  }
  test::write_bytes(run + "/notes.txt", "kept");  // not ours: never touched

  CheckpointStore store(run, 3);
  REQUIRE(store.latest());
  CHECK(store.latest()->first == 100);  // the half-written step 200 is not a checkpoint
  CHECK(resolve_checkpoint(run) == run + "/step_00000100");

  const auto live = store.begin(300);  // a temporary of this store survives its commits
  save(store, 200, {{"w", "200"}});
  CHECK(names_in(run) == std::set<std::string>{"notes.txt", "step_00000100", "step_00000200", fs::path(live).filename().string()});
  store.commit(live, 300);
  CHECK(names_in(run) == std::set<std::string>{"notes.txt", "step_00000100", "step_00000200", "step_00000300"});
}

TEST_CASE("checkpoint store: committing a step again replaces it completely") {
  ScratchDir scratch("ckpt");
  CheckpointStore store(scratch.path("run"), 0);
  save(store, 100, {{"w", "old"}, {"only_old", "x"}});
  const auto path = save(store, 100, {{"w", "new"}, {"only_new", "y"}});
  CHECK(names_in(path) == std::set<std::string>{"w", "only_new"});
  CHECK(test::read_bytes(path + "/w") == "new");
  CHECK(names_in(store.dir()) == std::set<std::string>{"step_00000100"});
}

TEST_CASE("checkpoint store: abort and commit accept only their own temporaries") {
  ScratchDir scratch("ckpt");
  CheckpointStore store(scratch.path("run"), 0);
  const auto tmp = store.begin(7);
  test::write_bytes(tmp + "/w", "x");
  store.abort(tmp);
  CHECK_FALSE(fs::exists(tmp));
  CHECK(names_in(store.dir()).empty());

  const auto other = scratch.path("precious");
  fs::create_directories(other);
  CHECK(error_of([&] { store.abort(other); }).find("not a temporary checkpoint directory") != std::string::npos);
  CHECK(error_of([&] { store.commit(other, 7); }).find(other + ": cannot commit") == 0);
  CHECK(fs::exists(other));

  const auto eight = store.begin(8);
  CHECK(error_of([&] { store.commit(eight, 9); }) == eight + ": begun for step 8 but committed as step 9");
  CHECK_FALSE(store.latest());
}

TEST_CASE("checkpoint store: a directory that cannot be created fails at construction") {
  ScratchDir scratch("ckpt");
  const auto file = scratch.path("a_file");
  test::write_bytes(file, "x");
  const auto bad = file + "/ckpt";
  const auto message = error_of([&] { CheckpointStore store(bad, 1); });
  CHECK(message.find(bad) == 0);
  CHECK(message.find("cannot create the checkpoint directory: Not a directory") != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
  CHECK(error_of([&] { CheckpointStore store(file, 1); }) == file + ": the checkpoint directory exists but is not a directory");
}

TEST_CASE("checkpoint store: an unwritable directory fails at construction") {
  if (::geteuid() == 0) {
    MESSAGE("running as root, which can write anywhere: the unwritable-directory check is skipped");
    return;
  }
  ScratchDir scratch("ckpt");
  const auto run = scratch.path("readonly");
  fs::create_directories(run);
  ::chmod(run.c_str(), 0555);
  const auto message = error_of([&] { CheckpointStore store(run, 1); });
  CHECK(message == run + ": the checkpoint directory is not writable: Permission denied");
  const auto below = run + "/sub";
  CHECK(error_of([&] { CheckpointStore store(below, 1); }).find(below + ": cannot create the checkpoint directory: Permission denied") == 0);
  ::chmod(run.c_str(), 0755);
}

TEST_CASE("resolve checkpoint: a step directory or a run directory") {
  ScratchDir scratch("ckpt");
  const auto run = scratch.path("run");
  CheckpointStore store(run, 0);
  CHECK(error_of([&] { resolve_checkpoint(run); }) == run + ": holds no complete checkpoint (no step_NNNNNNNN directory)");
  save(store, 100, {{"w", "1"}});
  save(store, 200, {{"w", "2"}});

  CHECK(resolve_checkpoint(run) == run + "/step_00000200");
  CHECK(resolve_checkpoint(run + "/") == run + "/step_00000200");
  CHECK(resolve_checkpoint(run + "/step_00000100") == run + "/step_00000100");
  CHECK(resolve_checkpoint(run + "/step_00000100/") == run + "/step_00000100");

  const auto missing = run + "/step_00000300";
  CHECK(error_of([&] { resolve_checkpoint(missing); }) == missing + ": no such checkpoint directory");
  const auto tmp = store.begin(300);
  CHECK(error_of([&] { resolve_checkpoint(tmp); }) == tmp + ": an incomplete checkpoint that was never committed");
  const auto file = run + "/step_00000100/w";
  CHECK(error_of([&] { resolve_checkpoint(file); }).find(file + ": not a directory") == 0);
}
