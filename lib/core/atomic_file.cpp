// Atomic file replacement over POSIX calls: O_EXCL temporary file, write loop, fsync, rename.
#include "core/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "core/error.hpp"

namespace llmlab {

namespace {

// 1 MiB: large enough that a write syscall costs well under 1% of the time spent copying, small
// enough that three open writers (a shard and its two scratch streams) stay a few MiB.
constexpr std::size_t kBufferBytes = std::size_t{1} << 20;

std::string describe(int err) { return std::system_category().message(err); }

std::string directory_of(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// A name no other writer uses: pid (other processes), a counter (other objects in this one) and
// clock bits (a pid reused after a crash left a file behind). O_EXCL settles any remaining race.
std::string temp_name(const std::string& path, unsigned attempt) {
  static std::atomic<std::uint64_t> counter{0};
  const auto ticks = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  const auto file = std::filesystem::path(path).filename().string();
  const auto dir = std::filesystem::path(path).parent_path();
  const auto name = fmt::format(".{}.tmp-{}-{}-{:x}", file, ::getpid(), counter.fetch_add(1), (ticks ^ attempt) & 0xffffffu);
  return (dir / name).string();
}

// Writes everything or returns the errno that stopped it.
int write_all(int fd, const unsigned char* data, std::size_t bytes) {
  while (bytes > 0) {
    const ssize_t n = ::write(fd, data, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return ENOSPC;  // POSIX allows it on a full device; never loop forever
    data += n;
    bytes -= static_cast<std::size_t>(n);
  }
  return 0;
}

int pwrite_all(int fd, const unsigned char* data, std::size_t bytes, std::uint64_t offset) {
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd, data, bytes, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return ENOSPC;
    data += n;
    offset += static_cast<std::uint64_t>(n);
    bytes -= static_cast<std::size_t>(n);
  }
  return 0;
}

int pread_all(int fd, unsigned char* data, std::size_t bytes, std::uint64_t offset) {
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, data, bytes, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // the file is shorter than what we wrote: someone truncated it
    data += n;
    offset += static_cast<std::uint64_t>(n);
    bytes -= static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (path_.empty()) throw Error("atomic write: empty file name");
  for (unsigned attempt = 0; attempt < 100; ++attempt) {
    temp_path_ = temp_name(path_, attempt);
    // 0666 filtered by the umask, like any file the user creates; O_CLOEXEC so a child process
    // started meanwhile cannot hold it open past our unlink.
    fd_ = ::open(temp_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) break;
    if (errno != EEXIST) {
      const int err = errno;
      throw Error(fmt::format("{}: cannot create a temporary file in {}: {}", path_, directory_of(path_), describe(err)));
    }
  }
  if (fd_ < 0) throw Error(fmt::format("{}: cannot create a unique temporary file in {}", path_, directory_of(path_)));
  buffer_.reserve(kBufferBytes);
}

AtomicFile::~AtomicFile() { discard(); }

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      fd_(std::exchange(other.fd_, -1)),
      size_(std::exchange(other.size_, 0)),
      buffer_(std::move(other.buffer_)) {}

AtomicFile& AtomicFile::operator=(AtomicFile&& other) noexcept {
  if (this != &other) {
    discard();
    path_ = std::move(other.path_);
    temp_path_ = std::move(other.temp_path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = std::exchange(other.size_, 0);
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

void AtomicFile::require_open(const char* what) const {
  if (fd_ < 0) throw Error(fmt::format("{}: cannot {}: the file was already committed or discarded", path_, what));
}

void AtomicFile::fail(const std::string& what, int err) {
  discard();
  throw Error(fmt::format("{}: {}: {}", path_, what, describe(err)));
}

void AtomicFile::flush() {
  if (buffer_.empty()) return;
  const int err = write_all(fd_, buffer_.data(), buffer_.size());
  buffer_.clear();
  if (err != 0) fail("write failed", err);
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  require_open("write");
  const auto* p = static_cast<const unsigned char*>(data);
  if (buffer_.size() + bytes > kBufferBytes) {
    flush();
    if (bytes >= kBufferBytes) {  // large blocks skip the copy
      if (const int err = write_all(fd_, p, bytes); err != 0) fail("write failed", err);
      size_ += bytes;
      return;
    }
  }
  buffer_.insert(buffer_.end(), p, p + bytes);
  size_ += bytes;
}

void AtomicFile::write_at(std::uint64_t offset, const void* data, std::size_t bytes) {
  require_open("write");
  if (offset > size_ || bytes > size_ - offset)
    throw Error(fmt::format("{}: write_at({}, {}) beyond the {} bytes written", path_, offset, bytes, size_));
  flush();
  if (const int err = pwrite_all(fd_, static_cast<const unsigned char*>(data), bytes, offset); err != 0)
    fail("write failed", err);
}

void AtomicFile::read_at(std::uint64_t offset, void* data, std::size_t bytes) {
  require_open("read back");
  if (offset > size_ || bytes > size_ - offset)
    throw Error(fmt::format("{}: read_at({}, {}) beyond the {} bytes written", path_, offset, bytes, size_));
  flush();
  if (const int err = pread_all(fd_, static_cast<unsigned char*>(data), bytes, offset); err != 0)
    fail("reading back the temporary file failed", err);
}

void AtomicFile::commit() {
  require_open("commit");
  flush();
  // fsync before rename: otherwise a crash can leave the new name pointing at a file whose
  // blocks were never written (the ext4 delayed-allocation zero-length-file problem).
  if (::fsync(fd_) != 0) fail("fsync failed", errno);
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {  // NFS reports deferred write errors only here
    const int err = errno;
    ::unlink(temp_path_.c_str());
    throw Error(fmt::format("{}: close failed: {}", path_, describe(err)));
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp_path_.c_str());
    throw Error(fmt::format("{}: cannot rename {} over it: {}", path_, temp_path_, describe(err)));
  }
  // The rename is durable only once the directory entry is on disk. Some filesystems cannot
  // fsync a directory (EINVAL); there is nothing more to do on those.
  const int dir = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    const int rc = ::fsync(dir);
    const int err = errno;
    ::close(dir);
    if (rc != 0 && err != EINVAL)
      throw Error(fmt::format("{}: written, but fsync of its directory failed: {}", path_, describe(err)));
  }
}

void AtomicFile::discard() noexcept {
  if (fd_ < 0) return;
  ::close(std::exchange(fd_, -1));
  ::unlink(temp_path_.c_str());
  buffer_.clear();
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicFile file(path);
  file.write(content);
  file.commit();
}

}  // namespace llmlab
