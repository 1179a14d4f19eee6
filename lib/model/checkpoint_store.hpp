// The on-disk layout of a training run's checkpoints: <dir>/step_00000100/ holds whatever files
// the trainer writes for step 100. A step directory appears only complete: the trainer fills a
// hidden temporary directory (<dir>/.step_00000100.tmp-<unique>) and commit() fsyncs it and
// renames it into place, so a crash at any moment leaves either the previous checkpoints or the
// new one, plus a temporary directory that the next commit removes.
//
// One writing process per run directory: commit() deletes temporary directories it did not
// create itself, which would break a second writer.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace llmlab {

// "step_00000100": at least eight digits, zero-padded, so names sort like steps up to 10^8.
std::string checkpoint_step_name(std::int64_t step);
// The step of a canonical step directory name, nullopt for anything else.
std::optional<std::int64_t> parse_checkpoint_step_name(const std::string& name);
// Complete checkpoints under `dir`, ascending; empty when there are none or `dir` is missing.
std::vector<std::int64_t> list_checkpoint_steps(const std::string& dir);

class CheckpointStore {
 public:
  // Creates `dir` (with parents) if needed and checks that it is writable, so a bad path fails
  // at start-up and not at the first checkpoint hours later. keep_last <= 0 keeps every
  // checkpoint. Throws Error naming the path and the system's reason.
  CheckpointStore(std::string dir, int keep_last);

  const std::string& dir() const { return dir_; }
  int keep_last() const { return keep_last_; }

  // Creates and removes a probe file in dir(); throws Error naming the path and strerror.
  void check_writable() const;

  // Creates a fresh, empty temporary directory for step `step` (>= 0) and returns its path;
  // the trainer writes its files there, then calls commit() or abort().
  std::string begin(std::int64_t step);
  // The same with a name every rank of a job can compute (shared_tmp(step, tag)), so that all
  // of them write their shards into it before one commits; a leftover of that name from a
  // crashed run is removed first.
  std::string begin_shared(std::int64_t step, const std::string& tag);
  std::string shared_tmp(std::int64_t step, const std::string& tag) const;
  // Makes `tmp_dir` (from begin(step)) the checkpoint of `step`: fsyncs every file and
  // directory in it, renames it to <dir>/step_NNNNNNNN (atomically exchanging it with an
  // existing checkpoint of the same step where the filesystem supports it), fsyncs dir(), then
  // deletes all but the newest keep_last checkpoints (never the one just committed) and any
  // temporary directory left by a crashed run. Returns the step directory's path.
  std::string commit(const std::string& tmp_dir, std::int64_t step);
  // Deletes `tmp_dir` (from begin) and everything in it; never touches complete checkpoints.
  void abort(const std::string& tmp_dir);

  // The newest complete checkpoint: (step, path), or nullopt when there is none.
  std::optional<std::pair<std::int64_t, std::string>> latest() const;
  // Steps of all complete checkpoints, ascending.
  std::vector<std::int64_t> steps() const;
  std::string step_path(std::int64_t step) const;

 private:
  // The step encoded in the name of a temporary directory of ours, checked to lie in dir_.
  std::int64_t check_tmp(const std::string& tmp_dir, const char* what) const;
  void prune(std::int64_t committed);
  std::string tmp_path(const std::string& step_name, const std::string& suffix) const;

  std::string dir_;
  int keep_last_;
  std::set<std::string> open_;  // temporaries begun and not yet committed or aborted
};

// A checkpoint directory to load: `path` itself when it is a step directory (step_NNNNNNNN),
// or the newest complete step directory when `path` is a run's checkpoint directory. Throws
// Error naming `path` when it does not exist, is a temporary (uncommitted) directory, or holds
// no complete checkpoint.
std::string resolve_checkpoint(const std::string& path);

}  // namespace llmlab
