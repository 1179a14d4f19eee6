// Maps a version-1 shard (docs/shard-format.md) and verifies all of it once at open: header,
// sizes, checksum, then every index entry and token id, so row() can trust the file and stay a
// few memcpys. The checks cost one pass over the file (xxh64 runs at memory speed).
#include "data/shard/shard_reader.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <system_error>

#include <fmt/format.h>
#include <xxhash.h>

#include "core/error.hpp"
#include "core/mapped_file.hpp"

namespace llmlab {

static_assert(std::endian::native == std::endian::little, "shards are little-endian; add byte swapping for this host");

namespace {

template <class T>
T get(const unsigned char* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

}  // namespace

struct ShardReader::State {
  std::string path;
  ShardInfo info;
  ShardLayout layout;
  MappedFile map;
  std::uint64_t position_end = 0;  // found by check_rows

  [[noreturn]] void bad(const std::string& problem) const { throw InputError(SourceLoc{path, 0, 0}, "", problem); }

  std::uint64_t row_offset(std::uint64_t r) const { return get<std::uint64_t>(map.data() + layout.row_offsets + 8 * r); }
  std::uint64_t row_doc(std::uint64_t r) const { return get<std::uint64_t>(map.data() + layout.row_docs + 8 * r); }
  PackedDoc doc(std::uint64_t d) const {
    const auto* p = map.data() + layout.docs + 8 * d;
    return PackedDoc{get<std::uint32_t>(p), get<std::uint32_t>(p + 4)};
  }
  std::uint32_t token(std::uint64_t t) const {
    const auto* p = map.data() + layout.tokens + t * info.token_bytes;
    return info.token_bytes == 2 ? get<std::uint16_t>(p) : get<std::uint32_t>(p);
  }
  std::uint8_t mask_bit(std::uint64_t t) const { return (map.data()[layout.loss_mask + t / 8] >> (t % 8)) & 1u; }

  void open_and_map() {
    map = MappedFile(path);
    if (map.size() == 0) bad("truncated: the file is empty");
  }

  void check_header() {
    const auto* p = map.data();
    if (map.size() < 8 || std::memcmp(p, kShardMagic, 8) != 0) {
      if (map.size() < 8 && std::memcmp(p, kShardMagic, map.size()) == 0)
        bad(fmt::format("truncated: {} bytes, not even the magic", map.size()));
      bad("not an llmlab shard (wrong magic; expected \"LLMLABSH\")");
    }
    if (map.size() < kShardFixedHeaderBytes) bad(fmt::format("truncated: {} bytes, the header alone is {}", map.size(), kShardFixedHeaderBytes));
    info.version = get<std::uint32_t>(p + 8);
    if (info.version != kShardVersion)
      bad(fmt::format("unsupported format version {} (this build reads version {})", info.version, kShardVersion));
    const auto token_bytes = get<std::uint32_t>(p + 12);
    info.packing_length = get<std::uint32_t>(p + 16);
    const auto tokenizer_bytes = get<std::uint32_t>(p + 20);
    info.vocab_size = get<std::uint64_t>(p + 24);
    info.rows = get<std::uint64_t>(p + 32);
    info.docs = get<std::uint64_t>(p + 40);
    info.tokens = get<std::uint64_t>(p + 48);
    if (info.vocab_size == 0 || info.vocab_size > (std::uint64_t{1} << 31))
      bad(fmt::format("vocab_size {} is outside 1..2^31", info.vocab_size));
    const std::uint32_t expected_width = info.vocab_size <= 65536 ? 2 : 4;
    if (token_bytes != expected_width)
      bad(fmt::format("token width {} bytes does not match vocab_size {} (expected {})", token_bytes, info.vocab_size, expected_width));
    info.token_bytes = static_cast<std::uint8_t>(token_bytes);
    if (info.packing_length == 0) bad("packing_length is 0");
    if (tokenizer_bytes > kShardMaxTokenizerBytes) bad(fmt::format("tokenizer identity length {} exceeds {}", tokenizer_bytes, kShardMaxTokenizerBytes));
    if (map.size() < kShardFixedHeaderBytes + tokenizer_bytes)
      bad(fmt::format("truncated: {} bytes, the header is {}", map.size(), kShardFixedHeaderBytes + tokenizer_bytes));
    info.tokenizer.assign(reinterpret_cast<const char*>(p + kShardFixedHeaderBytes), tokenizer_bytes);

    const auto l = shard_layout(info);
    if (!l) bad("size fields inconsistent: the header's counts overflow 64 bits");
    layout = *l;
    if (map.size() < layout.file_bytes)
      bad(fmt::format("truncated or size fields inconsistent: the header describes {} bytes, the file has {}", layout.file_bytes, map.size()));
    if (map.size() > layout.file_bytes)
      bad(fmt::format("size fields inconsistent with file size: the header describes {} bytes, the file has {}", layout.file_bytes, map.size()));
  }

  void check_footer() const {
    const auto* footer = map.data() + layout.footer;
    if (std::memcmp(footer + 8, kShardEndMagic, 8) != 0) bad("bad end magic (the file was cut short or overwritten)");
    const auto stored = get<std::uint64_t>(footer);
    const auto actual = XXH64(map.data(), layout.footer, 0);
    if (stored != actual) bad(fmt::format("checksum mismatch: stored xxh64 {:016x}, contents hash to {:016x}; the file is corrupt", stored, actual));
  }

  // Padding between sections and unused mask bits must be zero, so equal shards are equal files.
  void check_padding() const {
    const auto zero = [&](std::uint64_t from, std::uint64_t to, const char* what) {
      for (auto i = from; i < to; ++i)
        if (map.data()[i] != 0) bad(fmt::format("nonzero padding after the {}", what));
    };
    zero(kShardFixedHeaderBytes + info.tokenizer.size(), layout.tokens, "header");
    zero(layout.tokens + info.tokens * info.token_bytes, layout.loss_mask, "tokens");
    const auto mask_end = layout.loss_mask + info.tokens / 8;
    if (info.tokens % 8 != 0 && (map.data()[mask_end] >> (info.tokens % 8)) != 0) bad("nonzero unused bits after the loss mask");
    zero(mask_end + (info.tokens % 8 != 0 ? 1 : 0), layout.row_docs, "loss mask");
  }

  void check_rows() {
    if (row_offset(0) != 0 || row_offset(info.rows) != info.tokens)
      bad(fmt::format("row offsets run from {} to {}, expected 0 to {} tokens", row_offset(0), row_offset(info.rows), info.tokens));
    if (row_doc(0) != 0 || row_doc(info.rows) != info.docs)
      bad(fmt::format("row document index runs from {} to {}, expected 0 to {} documents", row_doc(0), row_doc(info.rows), info.docs));
    for (std::uint64_t r = 0; r < info.rows; ++r) {
      const auto begin = row_offset(r), end = row_offset(r + 1);
      if (end < begin || end > info.tokens) bad(fmt::format("row {}: token offsets {}..{} are out of order", r, begin, end));
      if (end - begin > info.packing_length)
        bad(fmt::format("row {} holds {} tokens, more than packing_length {}", r, end - begin, info.packing_length));
      const auto d0 = row_doc(r), d1 = row_doc(r + 1);
      if (d1 < d0 || d1 > info.docs) bad(fmt::format("row {}: document index {}..{} is out of order", r, d0, d1));
      if (d1 == d0) bad(fmt::format("row {} has no documents", r));
      std::uint64_t sum = 0;
      for (auto d = d0; d < d1; ++d) {
        const auto entry = doc(d);
        if (entry.length == 0) bad(fmt::format("row {}: document {} is empty", r, d - d0));
        if (std::uint64_t{entry.position_offset} + entry.length > std::numeric_limits<std::int32_t>::max())
          bad(fmt::format("row {}: document {} has positions beyond int32", r, d - d0));
        position_end = std::max<std::uint64_t>(position_end, std::uint64_t{entry.position_offset} + entry.length);
        sum += entry.length;
      }
      if (sum != end - begin) bad(fmt::format("row {}: document lengths sum to {} but the row holds {} tokens", r, sum, end - begin));
    }
  }

  void check_tokens() const {
    for (std::uint64_t t = 0; t < info.tokens; ++t) {
      if (token(t) < info.vocab_size) continue;
      std::uint64_t lo = 0, hi = info.rows;  // the row holding token t, for the message only
      while (hi - lo > 1) {
        const auto mid = lo + (hi - lo) / 2;
        if (row_offset(mid) <= t) lo = mid;
        else hi = mid;
      }
      bad(fmt::format("row {}: token id {} is outside the vocabulary (vocab_size {})", lo, token(t), info.vocab_size));
    }
  }
};

ShardReader::ShardReader(const std::string& path) : state_(std::make_unique<State>()) {
  state_->path = path;
  state_->open_and_map();
  state_->check_header();
  state_->check_footer();
  state_->check_padding();
  state_->check_rows();
  state_->check_tokens();
}

ShardReader::~ShardReader() = default;
ShardReader::ShardReader(ShardReader&&) noexcept = default;
ShardReader& ShardReader::operator=(ShardReader&&) noexcept = default;

const ShardInfo& ShardReader::info() const { return state_->info; }
std::uint64_t ShardReader::rows() const { return state_->info.rows; }
std::uint64_t ShardReader::position_end() const { return state_->position_end; }

PackedRow ShardReader::row(std::uint64_t index) const {
  const auto& s = *state_;
  if (index >= s.info.rows) throw Error(fmt::format("{}: row {} out of range ({} rows)", s.path, index, s.info.rows));
  const auto begin = s.row_offset(index), end = s.row_offset(index + 1);
  PackedRow row;
  row.tokens.resize(static_cast<std::size_t>(end - begin));
  row.loss_mask.resize(row.tokens.size());
  for (auto t = begin; t < end; ++t) {
    row.tokens[t - begin] = static_cast<std::int32_t>(s.token(t));
    row.loss_mask[t - begin] = s.mask_bit(t);
  }
  const auto d0 = s.row_doc(index), d1 = s.row_doc(index + 1);
  row.docs.reserve(static_cast<std::size_t>(d1 - d0));
  for (auto d = d0; d < d1; ++d) row.docs.push_back(s.doc(d));
  return row;
}

}  // namespace llmlab
