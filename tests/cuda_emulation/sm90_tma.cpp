// Tensor maps and TMA tile loads: cuTensorMapEncodeTiled with the checks its driver API
// documentation lists (the parameters kept in the 128-byte opaque CUtensorMap), the driver entry
// point that hands it out, and cp.async.bulk.tensor.tile loads into shared memory in the map's
// swizzle mode, which complete their bytes on an mbarrier when they land; and bulk reductions
// (cp.reduce.async.bulk ... add.f32) from shared into global memory with their bulk groups.
#include <cuda.h>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "emulator_state.hpp"

namespace llmlab::emu::detail {
namespace {

constexpr std::uint64_t kEncoded = 0x6c6c6d6c61623930ull;  // "llmlab90": marks a map cuTensorMapEncodeTiled wrote

// The parameters of a tiled tensor map, as the emulator keeps them inside CUtensorMap.
struct MapFields {
  std::uint64_t encoded;
  std::uint64_t address;
  std::uint64_t dims[5];     // elements, innermost first
  std::uint64_t strides[5];  // bytes; strides[0] is the element size
  std::uint16_t box[5];
  std::uint8_t element_strides[5];
  std::uint8_t rank, element_bytes, interleave, swizzle, oob_fill;
};
static_assert(sizeof(MapFields) <= sizeof(CUtensorMap));

std::uint32_t element_bytes(CUtensorMapDataType type) {
  switch (type) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: return 1;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: return 2;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32: return 4;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64: return 8;
  }
  return 0;
}

bool is_float(CUtensorMapDataType type) {
  return type == CU_TENSOR_MAP_DATA_TYPE_FLOAT16 || type == CU_TENSOR_MAP_DATA_TYPE_FLOAT32 ||
         type == CU_TENSOR_MAP_DATA_TYPE_FLOAT64 || type == CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
}

// Bytes of a swizzle row: CU_TENSOR_MAP_SWIZZLE_32B, _64B, _128B; 0 without swizzle.
std::uint32_t swizzle_span(unsigned mode) { return mode == CU_TENSOR_MAP_SWIZZLE_NONE ? 0 : 16u << mode; }

MapFields fields_of(const void* tensor_map, const char* what) {
  MapFields f;
  std::memcpy(&f, tensor_map, sizeof f);
  if (f.encoded != kEncoded) fail(std::string(what) + " with a tensor map cuTensorMapEncodeTiled did not write");
  return f;
}

std::size_t box_bytes(const MapFields& f) {
  std::size_t bytes = f.element_bytes;
  for (int d = 0; d < f.rank; ++d) bytes *= f.box[d];
  return bytes;
}

// A box lands over 128-byte shared-memory lines (the swizzle permutes 16-byte chunks within them),
// which must not hold an mbarrier: the copy would overwrite the barrier's state.
void check_no_mbarrier(const Block& b, std::uint32_t dst, std::size_t bytes) {
  const std::size_t end = (dst + bytes + 127) / 128 * 128;
  const auto it = b.mbarriers.lower_bound(dst);
  if (it != b.mbarriers.end() && it->first < end)
    fail(fmt::format("cp.async.bulk.tensor box at shared {:#x} ({} bytes) overwrites the mbarrier at shared {:#x}",
                     dst, bytes, it->first));
}

// The box, row-major with the innermost dimension contiguous, out-of-range elements zero, goes
// to shared memory at the swizzled addresses of its 16-byte chunks; then its bytes complete on
// the mbarrier.
void land(Block& b, const TmaCopy& c) {
  const MapFields f = fields_of(c.map.data(), "cp.async.bulk.tensor");
  const std::size_t elem = f.element_bytes, row_bytes = f.box[0] * elem;
  std::size_t rows = 1;
  for (int d = 1; d < f.rank; ++d) rows *= f.box[d];
  std::vector<unsigned char> tile(rows * row_bytes, 0);
  const std::int64_t x0 = c.coords[0];
  const std::int64_t lo = std::max<std::int64_t>(0, -x0);
  const std::int64_t hi = std::min<std::int64_t>(f.box[0], static_cast<std::int64_t>(f.dims[0]) - x0);
  for (std::size_t r = 0; r < rows && lo < hi; ++r) {
    std::uint64_t offset = 0;
    bool inside = true;
    for (std::size_t d = 1, rest = r; d < f.rank; rest /= f.box[d], ++d) {
      const std::int64_t x = c.coords[d] + static_cast<std::int64_t>(rest % f.box[d]);
      inside = inside && x >= 0 && x < static_cast<std::int64_t>(f.dims[d]);
      if (inside) offset += static_cast<std::uint64_t>(x) * f.strides[d];
    }
    if (!inside) continue;
    const std::uint64_t start = offset + static_cast<std::uint64_t>(x0 + lo) * elem;
    const auto bytes = static_cast<std::size_t>(hi - lo) * elem;
    // Every read lies past the tensor's address: inside its allocation if the range from there is.
    if (!in_device_allocation(reinterpret_cast<const void*>(f.address), start + bytes))
      fail(fmt::format("cp.async.bulk.tensor reads {} bytes for row {} of the box at ({}) outside the device "
                       "allocation of the tensor map's address (its dimensions and strides exceed the allocation)",
                       bytes, r, fmt::join(c.coords.begin(), c.coords.begin() + f.rank, ", ")));
    const auto* src = reinterpret_cast<const unsigned char*>(f.address + start);
    std::memcpy(tile.data() + r * row_bytes + static_cast<std::size_t>(lo) * elem, src, bytes);
  }
  check_no_mbarrier(b, c.dst, tile.size());
  const std::uint32_t span = swizzle_span(f.swizzle);
  for (std::size_t i = 0; i < tile.size(); i += 16)
    std::memcpy(shared_at(swizzle(c.dst + static_cast<std::uint32_t>(i), span), 16, "cp.async.bulk.tensor"),
                tile.data() + i, 16);
  complete_tx(b, c.bar, static_cast<std::uint32_t>(tile.size()));
}

template <typename Pick>
void land_picked(Block& b, Pick&& pick) {
  std::vector<TmaCopy> in_flight;
  in_flight.swap(b.tma_in_flight);
  for (const TmaCopy& c : in_flight) {
    if (pick(c))
      land(b, c);
    else
      b.tma_in_flight.push_back(c);
  }
}

}  // namespace

void land_tma_on(Block& b, std::uint32_t bar) {
  land_picked(b, [bar](const TmaCopy& c) { return c.bar == bar; });
}

void land_tma_at_random(Block& b) {
  // 1/16 a round: rarely enough that a copy is usually still in flight many instructions later
  // (with 1/2, a consumer that read a tile without waiting on its barrier got lucky most times).
  if (!b.tma_in_flight.empty()) land_picked(b, [](const TmaCopy&) { return coin() && coin() && coin() && coin(); });
}

void land_all_tma(Block& b) {
  land_picked(b, [](const TmaCopy&) { return true; });
}

}  // namespace llmlab::emu::detail

namespace llmlab::emu {

using detail::fail;

// A copy lands at random when issued or later: at a scheduling round, or at the latest when a
// thread polls its mbarrier. Until then its bytes keep the barrier's phase open, and the box's
// shared memory holds what it held before.
void tma_load(std::uint32_t dst, const void* tensor_map, const int* coords, int rank, std::uint32_t bar) {
  detail::Thread& t = detail::thread();
  detail::Block& b = detail::block();
  const char* what = "cp.async.bulk.tensor";
  const detail::MapFields f = detail::fields_of(tensor_map, what);
  if (rank != f.rank) fail(fmt::format("{}.{}d with a tensor map of rank {}", what, rank, f.rank));
  if (f.interleave != CU_TENSOR_MAP_INTERLEAVE_NONE || f.oob_fill != CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE ||
      std::any_of(f.element_strides, f.element_strides + f.rank, [](std::uint8_t s) { return s != 1; }))
    fail(std::string(what) + " with interleave, NaN fill or element strides is not emulated");
  // 128-byte aligned; a 128-byte swizzle's pattern spans 1024 bytes.
  const std::uint32_t alignment = f.swizzle == CU_TENSOR_MAP_SWIZZLE_128B ? 1024 : 128;
  const std::size_t bytes = detail::box_bytes(f);
  detail::shared_at(dst, bytes, what, alignment);
  detail::mbarrier_at(b, bar, what);
  detail::TmaCopy c;
  c.dst = dst;
  c.bar = bar;
  std::memcpy(c.map.data(), tensor_map, sizeof(CUtensorMap));
  std::copy(coords, coords + rank, c.coords.begin());
  ++t.steps;
  ++stats().tma_loads;
  stats().tma_bytes += bytes;
  if (detail::coin())
    detail::land(b, c);
  else
    b.tma_in_flight.push_back(c);
}

void prefetch_tensormap(const void* tensor_map) { detail::fields_of(tensor_map, "prefetch.tensormap"); }

namespace {

constexpr const char* kBulkReduce = "cp.reduce.async.bulk.add.f32";

void perform(detail::BulkReduce& r) {
  detail::check_async_proxy_read(detail::block(), r.src, r.bytes, kBulkReduce);
  const unsigned char* src = detail::shared_at(r.src, r.bytes, kBulkReduce);
  for (std::uint32_t i = 0; i < r.bytes / 4; ++i) {
    float x;
    std::memcpy(&x, src + 4 * i, 4);
    r.dst[i] += x;
  }
  r.done = true;
}

}  // namespace

void bulk_reduce_add_f32(float* dst, std::uint32_t src, std::uint32_t bytes) {
  if (bytes == 0 || bytes % 16 != 0)
    fail(fmt::format("{} of {} bytes (a positive multiple of 16 is required)", kBulkReduce, bytes));
  if (reinterpret_cast<std::uintptr_t>(dst) % 16 != 0)
    fail(fmt::format("{} to a global address not 16-byte aligned", kBulkReduce));
  if (!detail::in_device_allocation(dst, bytes))
    fail(fmt::format("{} adds {} bytes outside every device allocation", kBulkReduce, bytes));
  detail::shared_at(src, bytes, kBulkReduce);
  detail::Thread& t = detail::thread();
  t.bulk_open.push_back({dst, src, bytes, false});
  if (detail::coin()) perform(t.bulk_open.back());
  ++t.steps;
  ++stats().bulk_reduces;
  stats().bulk_reduce_bytes += bytes;
}

void bulk_commit_group() {
  detail::Thread& t = detail::thread();
  t.bulk_groups.push_back(std::move(t.bulk_open));
  t.bulk_open.clear();
}

void bulk_wait_group_read(int pending) {
  if (pending < 0) fail("cp.async.bulk.wait_group.read with a negative count");
  detail::Thread& t = detail::thread();
  while (t.bulk_groups.size() > static_cast<std::size_t>(pending)) {
    for (detail::BulkReduce& r : t.bulk_groups.front())
      if (!r.done) perform(r);
    t.bulk_groups.pop_front();
  }
}

namespace detail {

void check_bulk_retired(const Thread& t) {
  std::size_t left = t.bulk_open.size();
  for (const auto& g : t.bulk_groups) left += g.size();
  if (left > 0)
    fail(fmt::format("thread ({}, {}, {}) ends with {} {} whose shared source no cp.async.bulk.wait_group.read "
                     "has waited for",
                     t.idx.x, t.idx.y, t.idx.z, left, kBulkReduce));
}

}  // namespace detail

}  // namespace llmlab::emu

// The driver's documented requirements (CUDA Driver API, cuTensorMapEncodeTiled); the emulator
// returns CUDA_ERROR_INVALID_VALUE where they are not met, as the driver does.
CUresult cuTensorMapEncodeTiled(CUtensorMap* tensor_map, CUtensorMapDataType data_type, cuuint32_t rank,
                                void* global_address, const cuuint64_t* global_dim, const cuuint64_t* global_strides,
                                const cuuint32_t* box_dim, const cuuint32_t* element_strides,
                                CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                CUtensorMapL2promotion l2_promotion, CUtensorMapFloatOOBfill oob_fill) {
  using llmlab::emu::detail::MapFields;
  const std::uint32_t elem = llmlab::emu::detail::element_bytes(data_type);
  const auto address = reinterpret_cast<std::uintptr_t>(global_address);
  const bool interleave_32b = interleave == CU_TENSOR_MAP_INTERLEAVE_32B;
  const bool enums_valid = interleave >= CU_TENSOR_MAP_INTERLEAVE_NONE && interleave <= CU_TENSOR_MAP_INTERLEAVE_32B &&
                           swizzle >= CU_TENSOR_MAP_SWIZZLE_NONE && swizzle <= CU_TENSOR_MAP_SWIZZLE_128B &&
                           l2_promotion >= CU_TENSOR_MAP_L2_PROMOTION_NONE &&
                           l2_promotion <= CU_TENSOR_MAP_L2_PROMOTION_L2_256B &&
                           oob_fill >= CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE &&
                           oob_fill <= CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA;
  if (!tensor_map || reinterpret_cast<std::uintptr_t>(tensor_map) % 64 != 0 || elem == 0 || !enums_valid)
    return CUDA_ERROR_INVALID_VALUE;
  // tensorRank: 1 to 5, at least 3 with interleave.
  if (rank == 0 || rank > 5 || (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE && rank < 3))
    return CUDA_ERROR_INVALID_VALUE;
  // globalAddress: 16-byte aligned, 32 with 32-byte interleave.
  if (!global_address || address % (interleave_32b ? 32 : 16) != 0) return CUDA_ERROR_INVALID_VALUE;
  if (!global_dim || !box_dim || !element_strides || (rank > 1 && !global_strides)) return CUDA_ERROR_INVALID_VALUE;
  for (cuuint32_t i = 0; i < rank; ++i) {
    // globalDim: non-zero, at most 2^32; boxDim: non-zero, at most 256; elementStrides: 1 to 8.
    if (global_dim[i] == 0 || global_dim[i] > (1ull << 32) || box_dim[i] == 0 || box_dim[i] > 256 ||
        element_strides[i] == 0 || element_strides[i] > 8)
      return CUDA_ERROR_INVALID_VALUE;
  }
  // globalStrides (the rank - 1 outer ones, in bytes): multiples of 16 (32 with 32-byte
  // interleave), less than 2^40.
  for (cuuint32_t i = 0; i + 1 < rank; ++i)
    if (global_strides[i] % (interleave_32b ? 32 : 16) != 0 || global_strides[i] >= (1ull << 40))
      return CUDA_ERROR_INVALID_VALUE;
  // Without interleave, the inner box dimension in bytes is a multiple of 16, and with a swizzle at
  // most its span (32, 64 or 128 bytes). 32-byte interleave needs the 32-byte swizzle.
  const std::uint64_t inner = std::uint64_t{box_dim[0]} * elem;
  const std::uint32_t span = llmlab::emu::detail::swizzle_span(swizzle);
  if (interleave == CU_TENSOR_MAP_INTERLEAVE_NONE && (inner % 16 != 0 || (span != 0 && inner > span)))
    return CUDA_ERROR_INVALID_VALUE;
  if (interleave_32b && swizzle != CU_TENSOR_MAP_SWIZZLE_32B) return CUDA_ERROR_INVALID_VALUE;
  // The NaN fill only for floating-point types.
  if (oob_fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA && !llmlab::emu::detail::is_float(data_type))
    return CUDA_ERROR_INVALID_VALUE;

  MapFields f{};
  f.encoded = llmlab::emu::detail::kEncoded;
  f.address = address;
  f.rank = static_cast<std::uint8_t>(rank);
  f.element_bytes = static_cast<std::uint8_t>(elem);
  f.interleave = static_cast<std::uint8_t>(interleave);
  f.swizzle = static_cast<std::uint8_t>(swizzle);
  f.oob_fill = static_cast<std::uint8_t>(oob_fill);
  for (cuuint32_t i = 0; i < rank; ++i) {
    f.dims[i] = global_dim[i];
    f.strides[i] = i == 0 ? elem : global_strides[i - 1];
    f.box[i] = static_cast<std::uint16_t>(box_dim[i]);
    f.element_strides[i] = static_cast<std::uint8_t>(element_strides[i]);
  }
  *tensor_map = {};
  std::memcpy(tensor_map, &f, sizeof f);
  return CUDA_SUCCESS;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** function, unsigned int cuda_version,
                                             unsigned long long, cudaDriverEntryPointQueryResult* status) {
  if (!symbol || !function) return cudaErrorInvalidValue;
  *function = nullptr;
  cudaDriverEntryPointQueryResult result = cudaDriverEntryPointSymbolNotFound;
  if (std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0) {
    result = cuda_version >= 12000 ? cudaDriverEntryPointSuccess : cudaDriverEntryPointVersionNotSufficent;
    if (result == cudaDriverEntryPointSuccess) *function = reinterpret_cast<void*>(&cuTensorMapEncodeTiled);
  }
  if (status) *status = result;
  return cudaSuccess;
}
