// A whole file mapped read-only (MAP_PRIVATE), unmapped on destruction: how shard and
// safetensors readers view their files in place without reading them into memory.
#pragma once

#include <cstddef>
#include <string>

namespace llmlab {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws InputError "<path>: cannot open: ..." / "not a regular file", Error when mmap
  // fails. An empty file gives data() == nullptr and size() == 0.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace llmlab
