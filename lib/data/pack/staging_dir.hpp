// An output directory built beside its final place and swapped in only when complete: a
// failed or interrupted pack-data leaves the previous output (or nothing) as it was.
#pragma once

#include <string>

namespace llmlab {

class StagingDir {
 public:
  // Checks that `target` is absent, empty, or a previous pack-data output (it has a
  // manifest.json) — anything else is a user's directory and is refused with InputError — and
  // creates "<target>.tmp-<pid>-<n>". Throws Error naming the path when it cannot.
  explicit StagingDir(std::string target);
  // Removes the staging directory unless commit() succeeded.
  ~StagingDir();
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;

  const std::string& path() const { return staging_; }
  // Moves the staging directory to the target, replacing a previous output.
  void commit();

 private:
  std::string target_, staging_;
  bool committed_ = false;
};

}  // namespace llmlab
