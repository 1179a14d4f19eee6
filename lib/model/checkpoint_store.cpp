// Checkpoint directories over POSIX calls: mkdir of a uniquely named temporary, fsync of every
// file and directory in it, rename (or renameat2 RENAME_EXCHANGE over an existing step), fsync of
// the parent, then pruning that first renames a doomed step away so it never looks complete
// while half deleted.
#include "model/checkpoint_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "core/error.hpp"

namespace llmlab {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kStepPrefix = "step_";
constexpr std::string_view kTmpMarker = ".tmp-";

std::string describe(int err) { return std::system_category().message(err); }

// Without trailing slashes, so parent_path() and filename() mean what they say ("/" stays).
std::string strip_slashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

// pid (other processes), a counter (this one) and clock bits (a reused pid after a crash).
std::string unique_suffix(unsigned attempt) {
  static std::atomic<std::uint64_t> counter{0};
  const auto ticks = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return fmt::format("{}-{}-{:06x}", ::getpid(), counter.fetch_add(1), (ticks ^ attempt) & 0xffffffu);
}

// A temporary of ours: ".step_<digits>.tmp-...". Returns the step, or nullopt.
std::optional<std::int64_t> parse_tmp_name(const std::string& name) {
  if (name.empty() || name[0] != '.') return std::nullopt;
  const auto marker = name.find(kTmpMarker);
  if (marker == std::string::npos) return std::nullopt;
  return parse_checkpoint_step_name(name.substr(1, marker - 1));
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) throw Error(fmt::format("{}: cannot open to fsync: {}", path, describe(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some filesystems cannot fsync a directory (EINVAL); there is nothing more to do on those.
  if (rc != 0 && !(directory && err == EINVAL)) throw Error(fmt::format("{}: fsync failed: {}", path, describe(err)));
}

// Every regular file and directory below `root`, then `root` itself: the rename that publishes
// the checkpoint must not reach the disk before the contents it names.
void fsync_tree(const std::string& root) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const auto type = it->symlink_status(ec).type();
    if (ec) break;
    if (type == fs::file_type::regular) fsync_path(it->path().string(), false);
    else if (type == fs::file_type::directory) fsync_path(it->path().string(), true);
  }
  if (ec) throw Error(fmt::format("{}: cannot list the checkpoint's files: {}", root, ec.message()));
  fsync_path(root, true);
}

void remove_tree(const std::string& path, const std::string& why) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) throw Error(fmt::format("{}: cannot remove {}: {}", path, why, ec.message()));
}

}  // namespace

std::string checkpoint_step_name(std::int64_t step) {
  if (step < 0) throw Error(fmt::format("checkpoint step {} is negative", step));
  return fmt::format("step_{:08d}", step);
}

std::optional<std::int64_t> parse_checkpoint_step_name(const std::string& name) {
  if (name.size() <= kStepPrefix.size() || name.compare(0, kStepPrefix.size(), kStepPrefix) != 0) return std::nullopt;
  const auto digits = std::string_view(name).substr(kStepPrefix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  std::int64_t step = 0;
  for (const char c : digits) step = step * 10 + (c - '0');
  // Canonical names only, so step_100 and step_00000100 can never both be step 100.
  if (checkpoint_step_name(step) != name) return std::nullopt;
  return step;
}

std::vector<std::int64_t> list_checkpoint_steps(const std::string& dir) {
  std::vector<std::int64_t> steps;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return steps;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto step = parse_checkpoint_step_name(it->path().filename().string());
    std::error_code type_ec;
    if (step && it->is_directory(type_ec)) steps.push_back(*step);
  }
  if (ec) throw Error(fmt::format("{}: cannot list checkpoints: {}", dir, ec.message()));
  std::sort(steps.begin(), steps.end());
  return steps;
}

CheckpointStore::CheckpointStore(std::string dir, int keep_last) : dir_(strip_slashes(std::move(dir))), keep_last_(keep_last) {
  if (dir_.empty()) throw Error("checkpoint directory: empty path");
  std::error_code ec;
  if (fs::exists(dir_, ec) && !fs::is_directory(dir_, ec))
    throw Error(fmt::format("{}: the checkpoint directory exists but is not a directory", dir_));
  fs::create_directories(dir_, ec);
  if (ec) throw Error(fmt::format("{}: cannot create the checkpoint directory: {}", dir_, ec.message()));
  check_writable();
}

void CheckpointStore::check_writable() const {
  for (unsigned attempt = 0; attempt < 100; ++attempt) {
    const auto probe = (fs::path(dir_) / fmt::format(".write-probe-{}", unique_suffix(attempt))).string();
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) throw Error(fmt::format("{}: the checkpoint directory is not writable: {}", dir_, describe(errno)));
    const char byte = 0;
    const bool wrote = ::write(fd, &byte, 1) == 1;
    const int err = errno;
    ::close(fd);
    ::unlink(probe.c_str());
    if (!wrote) throw Error(fmt::format("{}: cannot write to the checkpoint directory: {}", dir_, describe(err)));
    return;
  }
  throw Error(fmt::format("{}: cannot create a unique probe file in the checkpoint directory", dir_));
}

std::string CheckpointStore::step_path(std::int64_t step) const { return (fs::path(dir_) / checkpoint_step_name(step)).string(); }

// A hidden name the stale-temporary sweep recognises: ".step_00000100.tmp-<suffix>".
std::string CheckpointStore::tmp_path(const std::string& step_name, const std::string& suffix) const {
  return (fs::path(dir_) / fmt::format(".{}{}{}", step_name, kTmpMarker, suffix)).string();
}

std::string CheckpointStore::begin(std::int64_t step) {
  const auto name = checkpoint_step_name(step);
  for (unsigned attempt = 0; attempt < 100; ++attempt) {
    const auto tmp = tmp_path(name, unique_suffix(attempt));
    if (::mkdir(tmp.c_str(), 0777) == 0) {
      open_.insert(tmp);
      return tmp;
    }
    if (errno != EEXIST) throw Error(fmt::format("{}: cannot create a checkpoint directory: {}", tmp, describe(errno)));
  }
  throw Error(fmt::format("{}: cannot create a unique temporary directory for {}", dir_, name));
}

std::string CheckpointStore::shared_tmp(std::int64_t step, const std::string& tag) const {
  return tmp_path(checkpoint_step_name(step), "job-" + tag);
}

std::string CheckpointStore::begin_shared(std::int64_t step, const std::string& tag) {
  const auto tmp = shared_tmp(step, tag);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (::mkdir(tmp.c_str(), 0777) != 0)
    throw Error(fmt::format("{}: cannot create a checkpoint directory: {}", tmp, describe(errno)));
  open_.insert(tmp);
  return tmp;
}

std::int64_t CheckpointStore::check_tmp(const std::string& tmp_dir, const char* what) const {
  const fs::path p(strip_slashes(tmp_dir));
  const auto step = parse_tmp_name(p.filename().string());
  if (!step || p.parent_path().lexically_normal() != fs::path(dir_).lexically_normal())
    throw Error(fmt::format("{}: cannot {}: not a temporary checkpoint directory of {}", tmp_dir, what, dir_));
  return *step;
}

std::string CheckpointStore::commit(const std::string& tmp_dir, std::int64_t step) {
  const auto tmp = strip_slashes(tmp_dir);
  const auto begun = check_tmp(tmp, "commit");
  if (begun != step) throw Error(fmt::format("{}: begun for step {} but committed as step {}", tmp, begun, step));
  std::error_code ec;
  if (!fs::is_directory(tmp, ec)) throw Error(fmt::format("{}: cannot commit: the directory is gone", tmp));
  fsync_tree(tmp);

  const auto final_path = step_path(step);
  bool replaced = false;  // tmp now holds the previous checkpoint of this step
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    if (errno != ENOTEMPTY && errno != EEXIST)
      throw Error(fmt::format("{}: cannot rename {} to it: {}", final_path, tmp, describe(errno)));
    // A checkpoint of this step exists (a resumed run saving the same step again): swap the
    // two atomically, so the step is complete at every instant.
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) == 0) {
      replaced = true;
    } else if (errno == EINVAL || errno == ENOSYS) {
      // No RENAME_EXCHANGE on this filesystem: move the old one aside first. A crash between
      // the two renames leaves this step missing (older checkpoints remain) and a temporary
      // that the next commit removes.
      const auto aside = tmp_path(checkpoint_step_name(step), "old-" + unique_suffix(0));
      if (::rename(final_path.c_str(), aside.c_str()) != 0)
        throw Error(fmt::format("{}: cannot move the previous checkpoint aside: {}", final_path, describe(errno)));
      if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
        const int err = errno;
        ::rename(aside.c_str(), final_path.c_str());  // put the previous one back
        throw Error(fmt::format("{}: cannot rename {} to it: {}", final_path, tmp, describe(err)));
      }
      remove_tree(aside, "the replaced checkpoint");
    } else {
      throw Error(fmt::format("{}: cannot replace it with {}: {}", final_path, tmp, describe(errno)));
    }
  }
  fsync_path(dir_, true);
  open_.erase(tmp);
  if (replaced) remove_tree(tmp, "the replaced checkpoint");
  prune(step);
  return final_path;
}

void CheckpointStore::prune(std::int64_t committed) {
  if (keep_last_ > 0) {
    auto all = steps();
    std::reverse(all.begin(), all.end());  // newest first
    int kept = 1;                          // the one just committed
    for (const auto step : all) {
      if (step == committed) continue;
      if (kept < keep_last_) {
        ++kept;
        continue;
      }
      // Renamed away first: a crash mid-delete must not leave a partial step_ directory that
      // a later resume would take for a complete checkpoint.
      const auto doomed = step_path(step);
      const auto trash = tmp_path(checkpoint_step_name(step), "del-" + unique_suffix(0));
      if (::rename(doomed.c_str(), trash.c_str()) != 0)
        throw Error(fmt::format("{}: step {} is saved, but removing this old checkpoint failed: {}", doomed, committed, describe(errno)));
      remove_tree(trash, "an old checkpoint");
    }
  }
  // Temporaries not begun by this store come from crashed or aborted runs.
  std::error_code ec;
  std::vector<std::string> stale;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const auto path = it->path().string();
    if (parse_tmp_name(it->path().filename().string()) && !open_.contains(path)) stale.push_back(path);
  }
  if (ec) throw Error(fmt::format("{}: cannot list checkpoints: {}", dir_, ec.message()));
  for (const auto& path : stale) remove_tree(path, "a stale temporary checkpoint");
}

void CheckpointStore::abort(const std::string& tmp_dir) {
  const auto tmp = strip_slashes(tmp_dir);
  check_tmp(tmp, "abort");
  std::error_code ec;
  fs::remove_all(tmp, ec);  // what remains is stale and goes at the next commit
  open_.erase(tmp);
}

std::optional<std::pair<std::int64_t, std::string>> CheckpointStore::latest() const {
  const auto all = steps();
  if (all.empty()) return std::nullopt;
  return std::pair{all.back(), step_path(all.back())};
}

std::vector<std::int64_t> CheckpointStore::steps() const { return list_checkpoint_steps(dir_); }

std::string resolve_checkpoint(const std::string& path) {
  const auto p = strip_slashes(path);
  std::error_code ec;
  const auto status = fs::status(p, ec);
  if (!fs::exists(status)) throw Error(fmt::format("{}: no such checkpoint directory", path));
  if (!fs::is_directory(status))
    throw Error(fmt::format("{}: not a directory; expected a checkpoint step directory (step_NNNNNNNN) or a run's checkpoint directory", path));
  const auto name = fs::path(p).filename().string();
  if (parse_checkpoint_step_name(name)) return p;
  if (parse_tmp_name(name)) throw Error(fmt::format("{}: an incomplete checkpoint that was never committed", path));
  const auto steps = list_checkpoint_steps(p);
  if (steps.empty()) throw Error(fmt::format("{}: holds no complete checkpoint (no step_NNNNNNNN directory)", path));
  return (fs::path(p) / checkpoint_step_name(steps.back())).string();
}

}  // namespace llmlab
