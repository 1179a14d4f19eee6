// Safetensors writing (a JSON header built by hand, so its bytes match the reference writer's
// serde output) and reading (mmap, one validation pass over the header, float conversion).
#include "model/safetensors.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/mapped_file.hpp"

namespace llmlab {

static_assert(std::endian::native == std::endian::little, "safetensors is little-endian; add byte swapping for this host");

namespace {

using nlohmann::json;

// The reference's Dtype enum, in its declaration order: the writer sorts by descending rank
// ("descending alignment") and then by name, which we reproduce to write identical files.
struct DtypeInfo {
  std::string_view name;
  std::size_t size;
};
constexpr std::array<DtypeInfo, 15> kDtypes{{{"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                             {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2}, {"I32", 4},
                                             {"U32", 4}, {"F32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8}}};

std::optional<std::size_t> dtype_rank(std::string_view dtype) {
  for (std::size_t i = 0; i < kDtypes.size(); ++i)
    if (kDtypes[i].name == dtype) return i;
  return std::nullopt;
}

// The reference rejects headers above 100 MB as corrupt; a real header is a few hundred KB.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

// A JSON string literal of `s`, escaped as serde_json escapes it (same set, lowercase \u00xx).
// Invalid UTF-8 throws json::type_error, which callers turn into an Error naming the tensor.
std::string quoted(const std::string& s) { return json(s).dump(); }

// For messages only: never throws, keeps the message on one line.
std::string tensor_key(const std::string& name) {
  return "tensor " + json(name).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string shape_str(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// numel and bytes of a shape, or nullopt when they overflow 64 bits.
std::optional<std::pair<std::uint64_t, std::uint64_t>> extent(const std::vector<std::int64_t>& shape,
                                                              std::size_t elem) {
  std::uint64_t n = 1;
  for (const auto d : shape)
    if (d < 0 || __builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n)) return std::nullopt;
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(n, std::uint64_t{elem}, &bytes) || n > std::uint64_t{std::numeric_limits<std::int64_t>::max()})
    return std::nullopt;
  return std::pair{n, bytes};
}

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float32
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return sign != 0 ? -mag : mag;
  }
  const std::uint32_t bits = exp == 31 ? sign | 0x7f800000u | (mant << 13)  // inf, NaN (payload kept)
                                       : sign | ((exp + 112u) << 23) | (mant << 13);  // rebias 15 -> 127
  return std::bit_cast<float>(bits);
}

float f64_to_f32(double d) {
  // Out-of-range double -> float is undefined behaviour in C++; IEEE rounding would give inf
  // from FLT_MAX + half an ulp on (a tie rounds up because FLT_MAX's mantissa is odd).
  constexpr float inf = std::numeric_limits<float>::infinity();
  if (std::fabs(d) >= 0x1.ffffffp+127) return d > 0 ? inf : -inf;
  return static_cast<float>(d);
}

}  // namespace

std::optional<std::size_t> safetensors_dtype_size(std::string_view dtype) {
  const auto rank = dtype_rank(dtype);
  if (!rank) return std::nullopt;
  return kDtypes[*rank].size;
}

// ---------------------------------------------------------------------------------------------
// Writing

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const auto bad = [&](const std::string& name, const std::string& problem) -> Error {
    return Error(fmt::format("{}: {}: {}", path, tensor_key(name), problem));
  };
  struct Planned {
    const TensorToWrite* t;
    std::size_t rank;
    std::uint64_t bytes;
  };
  std::vector<Planned> plan;
  plan.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (t.name.empty()) throw bad(t.name, "a tensor needs a name");
    if (t.name == "__metadata__") throw bad(t.name, "the name is reserved for the metadata");
    const auto rank = dtype_rank(t.dtype);
    if (!rank) throw bad(t.name, fmt::format("unknown dtype \"{}\"", t.dtype));
    const auto ext = extent(t.shape, kDtypes[*rank].size);
    if (!ext) throw bad(t.name, fmt::format("shape {} has a negative dimension or overflows 64 bits", shape_str(t.shape)));
    if (ext->second > 0 && t.data == nullptr) throw bad(t.name, fmt::format("{} bytes of data but a null pointer", ext->second));
    plan.push_back({&t, *rank, ext->second});
  }
  std::sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.t->name < b.t->name;
  });
  for (std::size_t i = 1; i < plan.size(); ++i)
    if (plan[i].t->name == plan[i - 1].t->name) throw bad(plan[i].t->name, "appears twice");

  // The header exactly as serde_json writes the reference's Metadata: "__metadata__" first
  // (only when there is some), then tensors in buffer order, each {dtype, shape, data_offsets}.
  std::string header = "{";
  try {
    if (!metadata.empty()) {
      header += "\"__metadata__\":{";
      bool first = true;
      for (const auto& [key, value] : metadata) {
        if (!first) header += ',';
        first = false;
        header += quoted(key) + ':' + quoted(value);
      }
      header += '}';
    }
  } catch (const json::exception&) {
    throw bad("__metadata__", "a metadata key or value is not valid UTF-8");
  }
  std::uint64_t offset = 0;
  for (const auto& p : plan) {
    if (header.size() > 1) header += ',';
    try {
      header += quoted(p.t->name);
    } catch (const json::exception&) {
      throw bad(p.t->name, "the name is not valid UTF-8");
    }
    header += fmt::format(":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}", p.t->dtype,
                          fmt::join(p.t->shape, ","), offset, offset + p.bytes);
    offset += p.bytes;
  }
  header += '}';
  // Pad with spaces so the buffer starts 8-byte aligned (8 + N is a multiple of 8).
  header.append((8 - header.size() % 8) % 8, ' ');

  AtomicFile file(path);
  const std::uint64_t n = header.size();
  file.write(&n, sizeof n);
  file.write(header);
  for (const auto& p : plan)
    if (p.bytes > 0) file.write(p.t->data, static_cast<std::size_t>(p.bytes));
  file.commit();
}

// ---------------------------------------------------------------------------------------------
// Reading

struct SafetensorsFile::State {
  std::string path;
  MappedFile map;
  std::map<std::string, SafetensorsTensor> tensors;
  std::map<std::string, std::string> metadata;

  [[noreturn]] void bad(const std::string& key, const std::string& problem) const {
    throw InputError(SourceLoc{path, 0, 0}, key, problem);
  }

  void open_and_map() {
    map = MappedFile(path);
    if (map.size() < 8) bad("", fmt::format("truncated: {} bytes, shorter than the 8-byte header length", map.size()));
  }

  // Parses the header, rejecting duplicate keys at any level (nlohmann would keep the last one
  // silently, and which one a reader uses would then depend on the library).
  json parse_header(std::string_view text) const {
    struct Level {
      std::set<std::string> keys;
      std::string last;
    };
    std::vector<Level> levels;
    std::optional<std::pair<std::string, std::string>> duplicate;  // (parent key, key)
    const json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::object_start) levels.emplace_back();
      else if (event == json::parse_event_t::object_end) levels.pop_back();
      else if (event == json::parse_event_t::key && !levels.empty()) {
        auto& top = levels.back();
        const auto& key = parsed.get_ref<const std::string&>();
        if (!top.keys.insert(key).second && !duplicate)
          duplicate = std::pair{levels.size() >= 2 ? levels[levels.size() - 2].last : std::string(), key};
        top.last = key;
      }
      return true;
    };
    json header;
    try {
      header = json::parse(text.begin(), text.end(), cb);
    } catch (const json::parse_error& e) {
      std::string what = e.what();
      if (const auto at = what.find("] "); at != std::string::npos) what.erase(0, at + 2);
      bad("", fmt::format("the header is not valid JSON: {}", what));
    }
    if (duplicate) {
      if (duplicate->first.empty()) bad(tensor_key(duplicate->second), "appears twice in the header");
      bad(tensor_key(duplicate->first), fmt::format("key \"{}\" appears twice", duplicate->second));
    }
    return header;
  }

  static std::optional<std::uint64_t> as_u64(const json& v) {
    if (!v.is_number_unsigned()) return std::nullopt;
    return v.get<std::uint64_t>();
  }

  void read_metadata(const json& value) {
    if (!value.is_object()) bad("__metadata__", "must be an object of strings");
    for (const auto& [key, v] : value.items()) {
      if (!v.is_string()) bad("__metadata__", fmt::format("value of \"{}\" is not a string", key));
      metadata.emplace(key, v.get<std::string>());
    }
  }

  void read_tensor(const std::string& name, const json& info) {
    const auto key = tensor_key(name);
    if (!info.is_object()) bad(key, "entry is not an object");
    for (const auto& [field, v] : info.items())
      if (field != "dtype" && field != "shape" && field != "data_offsets") bad(key, fmt::format("unknown field \"{}\"", field));
    SafetensorsTensor t;
    const auto dtype = info.find("dtype");
    if (dtype == info.end() || !dtype->is_string()) bad(key, "missing dtype");
    t.dtype = dtype->get<std::string>();
    const auto elem = safetensors_dtype_size(t.dtype);
    if (!elem) bad(key, fmt::format("unknown dtype \"{}\"", t.dtype));
    const auto shape = info.find("shape");
    if (shape == info.end() || !shape->is_array()) bad(key, "missing shape");
    for (const auto& d : *shape) {
      const auto v = as_u64(d);
      if (!v || *v > std::uint64_t{std::numeric_limits<std::int64_t>::max()})
        bad(key, fmt::format("shape {} has an entry that is not a non-negative integer", shape->dump()));
      t.shape.push_back(static_cast<std::int64_t>(*v));
    }
    const auto offsets = info.find("data_offsets");
    if (offsets == info.end() || !offsets->is_array() || offsets->size() != 2 || !as_u64((*offsets)[0]) ||
        !as_u64((*offsets)[1]))
      bad(key, "data_offsets must be [begin, end] with non-negative integers");
    const auto begin = *as_u64((*offsets)[0]), end = *as_u64((*offsets)[1]);
    if (end < begin) bad(key, fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
    const auto ext = extent(t.shape, *elem);
    if (!ext) bad(key, fmt::format("shape {} overflows 64 bits", shape_str(t.shape)));
    if (ext->second != end - begin)
      bad(key, fmt::format("shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", shape_str(t.shape), t.dtype,
                           ext->second, begin, end, end - begin));
    t.numel = static_cast<std::int64_t>(ext->first);
    t.offset = begin;
    t.bytes = end - begin;
    tensors.emplace(name, std::move(t));
  }

  void read_header() {
    const auto n = load<std::uint64_t>(map.data());
    if (n > kMaxHeaderBytes)
      bad("", fmt::format("header length {} exceeds the {}-byte limit: not a safetensors file, or a corrupt one", n, kMaxHeaderBytes));
    if (n > map.size() - 8) bad("", fmt::format("truncated: the header length is {} bytes but only {} follow it", n, map.size() - 8));
    const std::string_view text(reinterpret_cast<const char*>(map.data() + 8), static_cast<std::size_t>(n));
    if (text.empty() || text.front() != '{') bad("", "the header does not start with '{': not a safetensors file");
    const auto header = parse_header(text);
    for (const auto& [name, info] : header.items()) {
      if (name == "__metadata__") read_metadata(info);
      else read_tensor(name, info);
    }
    check_tiling(map.size() - 8 - static_cast<std::size_t>(n), static_cast<std::size_t>(8 + n));
  }

  // The tensors must cover the data buffer exactly: sorted by offsets, each begins where the
  // previous ended and the last ends at the end of the file.
  void check_tiling(std::uint64_t buffer_bytes, std::size_t buffer_start) {
    std::vector<std::pair<const std::string*, SafetensorsTensor*>> order;
    for (auto& [name, t] : tensors) {
      if (t.offset + t.bytes > buffer_bytes)
        bad(tensor_key(name), fmt::format("data_offsets [{}, {}] run past the {}-byte data buffer (file truncated?)", t.offset,
                                          t.offset + t.bytes, buffer_bytes));
      t.data = map.data() + buffer_start + t.offset;
      order.emplace_back(&name, &t);
    }
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return std::pair{a.second->offset, a.second->bytes} < std::pair{b.second->offset, b.second->bytes};
    });
    std::uint64_t at = 0;
    const std::string* prev = nullptr;
    for (const auto& [name, t] : order) {
      if (t->offset < at)
        bad(tensor_key(*name), fmt::format("data_offsets [{}, {}] overlap {}, which ends at {}", t->offset, t->offset + t->bytes,
                                           tensor_key(*prev), at));
      if (t->offset > at)
        bad(tensor_key(*name), fmt::format("data_offsets [{}, {}] leave a gap: the previous tensor ends at {}", t->offset,
                                           t->offset + t->bytes, at));
      at = t->offset + t->bytes;
      prev = name;
    }
    if (at != buffer_bytes)
      bad("", fmt::format("{} unused bytes after the last tensor (the tensors end at {}, the data buffer is {} bytes)",
                          buffer_bytes - at, at, buffer_bytes));
  }
};

SafetensorsFile::SafetensorsFile(const std::string& path) : state_(std::make_unique<State>()) {
  state_->path = path;
  state_->open_and_map();
  state_->read_header();
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

const std::string& SafetensorsFile::path() const { return state_->path; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(state_->tensors.size());
  for (const auto& [name, t] : state_->tensors) out.push_back(name);
  return out;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return state_->metadata; }

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  const auto it = state_->tensors.find(name);
  return it == state_->tensors.end() ? nullptr : &it->second;
}

const SafetensorsTensor& SafetensorsFile::at(const std::string& name) const {
  const auto* t = find(name);
  if (t == nullptr) state_->bad(tensor_key(name), fmt::format("not in the file (it holds {} tensors)", state_->tensors.size()));
  return *t;
}

void SafetensorsFile::read_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape, float* dst) const {
  const auto& t = at(name);
  if (t.shape != expected_shape)
    state_->bad(tensor_key(name), fmt::format("shape {} in the file, expected {}", shape_str(t.shape), shape_str(expected_shape)));
  read_f32(name, dst, t.numel);
}

void SafetensorsFile::read_f32(const std::string& name, float* dst, std::int64_t expected_numel) const {
  const auto& t = at(name);
  if (t.numel != expected_numel)
    state_->bad(tensor_key(name), fmt::format("shape {} in the file holds {} elements, expected {}", shape_str(t.shape), t.numel,
                                              expected_numel));
  const auto* src = static_cast<const unsigned char*>(t.data);
  const auto n = static_cast<std::size_t>(t.numel);
  if (t.dtype == "F32") {
    if (n > 0) std::memcpy(dst, src, n * sizeof(float));
  } else if (t.dtype == "BF16") {  // bf16 is the top half of a float32
    for (std::size_t i = 0; i < n; ++i)
      dst[i] = std::bit_cast<float>(std::uint32_t{load<std::uint16_t>(src + 2 * i)} << 16);
  } else if (t.dtype == "F16") {
    for (std::size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load<std::uint16_t>(src + 2 * i));
  } else if (t.dtype == "F64") {
    for (std::size_t i = 0; i < n; ++i) dst[i] = f64_to_f32(load<double>(src + 8 * i));
  } else {
    state_->bad(tensor_key(name), fmt::format("dtype {} cannot be read as float32 (F32, F16, BF16 and F64 can)", t.dtype));
  }
}

}  // namespace llmlab
