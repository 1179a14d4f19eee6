// Helpers for the shard, batch and atomic-file tests: scratch directories, byte-level file
// access, random packed rows, and a forked child whose file size limit simulates a full disk.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "data/shard/shard_format.hpp"

namespace llmlab::test {

// A fresh directory per test, removed with everything in it when the test ends.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("llmlab-" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  std::string path(const std::string& file) const { return (dir_ / file).string(); }
  // Every name in the directory, hidden temporaries included.
  std::set<std::string> files() const {
    std::set<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) out.insert(entry.path().filename().string());
    return out;
  }

 private:
  std::filesystem::path dir_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// splitmix64, so the random rows are the same with every standard library.
struct TestRng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }  // bias is irrelevant for tests
};

// A valid row of 1..packing_length tokens split into 1..4 documents; some documents are
// continuation chunks (position_offset > 0). When `tag` >= 0 the first token is `tag`, so a
// test can tell rows apart in a batch.
inline PackedRow random_row(TestRng& rng, std::uint32_t packing_length, std::uint64_t vocab, std::int64_t tag = -1) {
  PackedRow row;
  const auto n = static_cast<std::uint32_t>(1 + rng.below(packing_length));
  for (std::uint32_t i = 0; i < n; ++i) {
    // Extremes of the id range are where a width or sign bug would show.
    const auto pick = rng.below(8);
    const auto id = pick == 0 ? vocab - 1 : pick == 1 ? 0 : rng.below(vocab);
    row.tokens.push_back(static_cast<std::int32_t>(id));
    row.loss_mask.push_back(static_cast<std::uint8_t>(rng.below(4) != 0));
  }
  if (tag >= 0) row.tokens[0] = static_cast<std::int32_t>(tag);
  std::uint32_t left = n;
  while (left > 0) {
    const auto len = rng.below(3) == 0 ? left : static_cast<std::uint32_t>(1 + rng.below(left));
    const auto offset = rng.below(3) == 0 ? static_cast<std::uint32_t>(rng.below(100000)) : 0u;
    row.docs.push_back(PackedDoc{len, offset});
    left -= len;
  }
  return row;
}

inline bool same_row(const PackedRow& a, const PackedRow& b) {
  if (a.tokens != b.tokens || a.loss_mask != b.loss_mask || a.docs.size() != b.docs.size()) return false;
  for (std::size_t i = 0; i < a.docs.size(); ++i)
    if (a.docs[i].length != b.docs[i].length || a.docs[i].position_offset != b.docs[i].position_offset) return false;
  return true;
}

// Exit codes of run_with_file_limit besides the body's own.
constexpr int kCannotLimit = 90;  // setrlimit refused, or the limit was not enforced
constexpr int kBodyThrew = 91;
constexpr int kForkFailed = -1;

// Runs `body` in a forked child whose RLIMIT_FSIZE is `limit` bytes with SIGXFSZ ignored, so a
// write past the limit fails with EFBIG as on a full disk. Returns the child's exit status.
// The child probes that the limit is enforced (some sandboxes ignore it) before the body.
inline int run_with_file_limit(std::uint64_t limit, const std::string& probe_path, const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid < 0) return kForkFailed;
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit rl{};
    if (::getrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(kCannotLimit);
    rl.rlim_cur = limit;
    if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(kCannotLimit);
    {
      std::string big(static_cast<std::size_t>(limit) + 4096, 'x');
      std::FILE* f = std::fopen(probe_path.c_str(), "wb");
      const bool limited = f == nullptr || std::fwrite(big.data(), 1, big.size(), f) != big.size() || std::fflush(f) != 0;
      if (f != nullptr) std::fclose(f);
      std::remove(probe_path.c_str());
      if (!limited) ::_exit(kCannotLimit);
    }
    int code = kBodyThrew;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);  // no atexit handlers: the parent's doctest state must not run twice
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return kForkFailed;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace llmlab::test
