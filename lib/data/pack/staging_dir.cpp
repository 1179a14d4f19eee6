// Staging and swapping in pack-data's output directory.
#include "data/pack/staging_dir.hpp"

#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "core/error.hpp"

namespace llmlab {

namespace fs = std::filesystem;

StagingDir::StagingDir(std::string target) : target_(fs::absolute(target).lexically_normal().string()) {
  while (!target_.empty() && target_.size() > 1 && target_.back() == '/') target_.pop_back();
  std::error_code ec;
  if (fs::exists(target_, ec)) {
    if (!fs::is_directory(target_, ec))
      throw InputError(SourceLoc{}, "data.output", "'" + target_ + "' exists and is not a directory");
    if (!fs::is_empty(target_, ec) && !fs::exists(fs::path(target_) / "manifest.json", ec))
      throw InputError(SourceLoc{}, "data.output",
                       "'" + target_ + "' is a non-empty directory that is not a pack-data output; choose another");
  }
  static std::atomic<int> counter{0};
  staging_ = target_ + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  fs::create_directories(staging_, ec);
  if (ec) throw Error("cannot create the output directory '" + staging_ + "': " + ec.message());
}

StagingDir::~StagingDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void StagingDir::commit() {
  std::error_code ec;
  std::string old;
  if (fs::exists(target_, ec)) {  // an empty directory or a previous output: move it aside
    old = staging_ + ".old";
    fs::rename(target_, old, ec);
    if (ec) throw Error("cannot move the previous output '" + target_ + "' aside: " + ec.message());
  }
  fs::rename(staging_, target_, ec);
  if (ec) {
    std::error_code back;
    if (!old.empty()) fs::rename(old, target_, back);  // put the previous output back
    throw Error("cannot move '" + staging_ + "' to '" + target_ + "': " + ec.message());
  }
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace llmlab
