#include "model/kv_cache.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace llmlab {

std::int64_t KvCache::bytes(const ModelSpec& m, std::int64_t sequences, std::int64_t capacity) {
  return 2 * m.num_layers * sequences * capacity * m.num_kv_heads * m.head_dim * static_cast<std::int64_t>(sizeof(float));
}

KvCache::KvCache(const ModelSpec& m, TrackedMemory& mem, std::int64_t sequences, std::int64_t capacity)
    : sequences_(sequences), capacity_(capacity), row_(m.num_kv_heads * m.head_dim),
      layer_(sequences * capacity * m.num_kv_heads * m.head_dim) {
  if (sequences <= 0 || capacity <= 0)
    throw Error(fmt::format("kv cache: {} sequences of capacity {} (both must be positive)", sequences, capacity));
  k_ = Tracked<float>(mem, m.num_layers * layer_, Category::activations);
  v_ = Tracked<float>(mem, m.num_layers * layer_, Category::activations);
  lengths_.assign(static_cast<std::size_t>(sequences), 0);
}

}  // namespace llmlab
