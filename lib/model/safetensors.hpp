// The safetensors format (github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {str: str}} padded with spaces to a multiple of 8, then the tensors' bytes. Offsets count from
// the start of that buffer, and the tensors tile it exactly. We write what the reference writer
// writes, byte for byte, and read Hugging Face checkpoints (often bf16/fp16) into float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmlab {

// Bytes per element of a safetensors dtype name ("F32", "BF16", ...); nullopt when unknown.
// Known: BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64.
std::optional<std::size_t> safetensors_dtype_size(std::string_view dtype);

struct TensorToWrite {
  std::string name;
  std::string dtype;               // "F32", "BF16", ... (see safetensors_dtype_size)
  std::vector<std::int64_t> shape;  // row-major; {} is a scalar, a 0 anywhere an empty tensor
  const void* data = nullptr;       // product(shape) * dtype size bytes; may be null when empty
};

// Writes `path` atomically (AtomicFile: temporary, fsync, rename), streaming each tensor's bytes
// from `data` without copying them. The layout matches the reference writer: tensors ordered by
// descending dtype alignment, then by name, so every tensor starts aligned to its element size;
// the file is then independent of the order of `tensors`. An empty `metadata` writes no
// "__metadata__" key. Throws Error naming the file and the tensor for a bad name, dtype or
// shape (checked before anything is written) and for any I/O failure, in which case the
// previous file at `path`, if any, is untouched.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// One tensor of an open file. `data` points into the mapping and lives as long as the file
// object; it is aligned only as far as the writer aligned it (the reference writer aligns every
// tensor to its element size; read through memcpy or read_f32 to be safe with other writers).
struct SafetensorsTensor {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::int64_t numel = 0;
  std::uint64_t offset = 0;  // from the start of the data buffer
  std::uint64_t bytes = 0;
  const void* data = nullptr;
};

// A safetensors file mapped read-only and validated completely at open: header length, JSON,
// dtypes, shapes against offsets, offsets tiling the buffer, duplicate names, metadata strings.
// Every problem throws InputError "<path>: tensor \"<name>\": <problem>" (one line).
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const;
  // Tensor names in sorted order.
  std::vector<std::string> names() const;
  const std::map<std::string, std::string>& metadata() const;
  // nullptr when there is no tensor of that name.
  const SafetensorsTensor* find(const std::string& name) const;
  // Like find, but a missing tensor throws InputError naming the file and the tensor.
  const SafetensorsTensor& at(const std::string& name) const;

  // Copies tensor `name` into dst[0 .. numel) as float32, converting from F32, F16, BF16 (both
  // exact) or F64 (rounded to nearest). A shape other than `expected_shape` throws InputError
  // quoting both shapes; so do a missing tensor and a non-float dtype.
  void read_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape, float* dst) const;
  // The same, checking only the element count (for callers that hold a flat buffer).
  void read_f32(const std::string& name, float* dst, std::int64_t expected_numel) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace llmlab
