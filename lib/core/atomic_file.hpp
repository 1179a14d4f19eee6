// Atomic file replacement: bytes go to a uniquely named temporary file beside the target, and
// only commit() (fsync, rename, fsync of the directory) makes them visible at the target path.
// Readers therefore see the old file or the complete new one, never a half-written one, even
// after a crash or a full disk. Used for shards, checkpoints and manifests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llmlab {

class AtomicFile {
 public:
  // Creates the temporary file in the target's directory (same filesystem, so the final rename
  // is atomic). Throws Error naming the path and the system's reason when it cannot.
  explicit AtomicFile(std::string path);
  // Removes the temporary file unless commit() succeeded; the target is never touched.
  ~AtomicFile();
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&& other) noexcept;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends bytes (buffered). Every I/O failure throws Error naming the target and strerror,
  // and discards the temporary file first, so a caller that stops at the throw leaves nothing.
  void write(const void* data, std::size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  // Overwrites bytes already written (e.g. a header whose counts are known only at the end).
  void write_at(std::uint64_t offset, const void* data, std::size_t bytes);
  // Reads back bytes already written (e.g. to checksum the file before sealing it).
  void read_at(std::uint64_t offset, void* data, std::size_t bytes);
  // Bytes written so far.
  std::uint64_t size() const { return size_; }

  // Flushes, fsyncs, renames over the target and fsyncs the directory so the rename survives a
  // power loss. After it returns the object is spent; further writes throw.
  void commit();
  // Drops the temporary file now (idempotent, never throws).
  void discard() noexcept;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  bool is_open() const { return fd_ >= 0; }

 private:
  void flush();
  void require_open(const char* what) const;
  [[noreturn]] void fail(const std::string& what, int err);

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;          // logical size: flushed bytes plus buffer_
  std::vector<unsigned char> buffer_;
};

// Replaces `path` with `content` atomically (manifests, small state files).
void write_file_atomic(const std::string& path, std::string_view content);

}  // namespace llmlab
