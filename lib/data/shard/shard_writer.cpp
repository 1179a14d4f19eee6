// Streams packed rows into a version-1 shard (docs/shard-format.md). Tokens go straight to the
// shard's temporary file; loss-mask bits and the docs table, which the format places after all
// tokens, go to two scratch temporaries beside it and are copied in at finish(). Only the
// per-row index (16 bytes a row) stays in memory, so memory does not grow with tokens or docs.
#include "data/shard/shard_writer.hpp"

#include <bit>
#include <cstring>
#include <limits>
#include <vector>

#include <fmt/format.h>
#include <xxhash.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"

namespace llmlab {

static_assert(std::endian::native == std::endian::little, "shards are little-endian; add byte swapping for this host");

namespace {

constexpr std::size_t kCopyChunk = std::size_t{1} << 20;
constexpr std::uint64_t kMaxVocab = std::uint64_t{1} << 31;  // ids are int32 in PackedRow and Batch
constexpr std::uint64_t kMaxPosition = std::numeric_limits<std::int32_t>::max();
constexpr unsigned char kZeros[8] = {};

template <class T>
void put(std::vector<unsigned char>& out, T value) {
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.insert(out.end(), bytes, bytes + sizeof(T));
}

void pad8(AtomicFile& file) {
  if (const auto rem = file.size() % 8; rem != 0) file.write(kZeros, static_cast<std::size_t>(8 - rem));
}

// Appends everything written to a scratch file onto `out`.
void append_scratch(AtomicFile& scratch, AtomicFile& out, std::vector<unsigned char>& chunk) {
  for (std::uint64_t offset = 0; offset < scratch.size(); offset += chunk.size()) {
    chunk.resize(static_cast<std::size_t>(std::min<std::uint64_t>(kCopyChunk, scratch.size() - offset)));
    scratch.read_at(offset, chunk.data(), chunk.size());
    out.write(chunk.data(), chunk.size());
  }
}

// Fields at fixed offsets (docs/shard-format.md); the tail after the tokenizer is zero padding.
std::vector<unsigned char> encode_header(const ShardInfo& info) {
  std::vector<unsigned char> h((kShardFixedHeaderBytes + info.tokenizer.size() + 7) / 8 * 8, 0);
  const auto at = [&](std::size_t offset, auto value) { std::memcpy(h.data() + offset, &value, sizeof value); };
  std::memcpy(h.data(), kShardMagic, sizeof kShardMagic);
  at(8, std::uint32_t{info.version});
  at(12, std::uint32_t{info.token_bytes});
  at(16, std::uint32_t{info.packing_length});
  at(20, static_cast<std::uint32_t>(info.tokenizer.size()));
  at(24, std::uint64_t{info.vocab_size});
  at(32, std::uint64_t{info.rows});
  at(40, std::uint64_t{info.docs});
  at(48, std::uint64_t{info.tokens});
  std::memcpy(h.data() + kShardFixedHeaderBytes, info.tokenizer.data(), info.tokenizer.size());
  return h;
}

}  // namespace

struct ShardWriter::State {
  std::string path;
  ShardInfo info;
  AtomicFile out;   // header placeholder, then tokens; the rest is appended by finish()
  AtomicFile mask;  // scratch: loss-mask bits, LSB first
  AtomicFile docs;  // scratch: (length, position_offset) per doc
  std::vector<std::uint64_t> row_docs{0};
  std::vector<std::uint64_t> row_offsets{0};
  unsigned char mask_byte = 0;  // bits of the current, not yet complete, mask byte
  unsigned mask_bits = 0;
  std::vector<unsigned char> buf;  // reused encode buffer
  bool done = false;               // finished, or abandoned after an I/O error

  State(std::string p, ShardInfo i)
      : path(std::move(p)), info(std::move(i)), out(path), mask(path + ".mask"), docs(path + ".docs") {}

  // An I/O failure leaves nothing behind: all three temporaries go before the error surfaces.
  [[noreturn]] void abandon(const Error& e) {
    done = true;
    out.discard();
    mask.discard();
    docs.discard();
    throw Error(fmt::format("{}: writing the shard failed: {}", path, e.what()));
  }

  void validate(const PackedRow& row) const {
    const auto where = [&] { return fmt::format("{}: row {}", path, info.rows); };
    if (row.docs.empty()) throw InputError(where() + ": the row has no documents");
    if (row.tokens.size() > info.packing_length)
      throw InputError(fmt::format("{}: {} tokens exceed packing_length {}", where(), row.tokens.size(), info.packing_length));
    if (row.loss_mask.size() != row.tokens.size())
      throw InputError(fmt::format("{}: loss_mask has {} entries for {} tokens", where(), row.loss_mask.size(), row.tokens.size()));
    std::uint64_t sum = 0;
    for (std::size_t d = 0; d < row.docs.size(); ++d) {
      const auto& doc = row.docs[d];
      if (doc.length == 0) throw InputError(fmt::format("{}: document {} is empty", where(), d));
      if (std::uint64_t{doc.position_offset} + doc.length > kMaxPosition)
        throw InputError(fmt::format("{}: document {} has positions beyond int32", where(), d));
      sum += doc.length;
    }
    if (sum != row.tokens.size())
      throw InputError(fmt::format("{}: document lengths sum to {} but the row has {} tokens", where(), sum, row.tokens.size()));
    for (std::size_t t = 0; t < row.tokens.size(); ++t) {
      const auto id = row.tokens[t];
      if (id < 0 || static_cast<std::uint64_t>(id) >= info.vocab_size)
        throw InputError(fmt::format("{}: token {} has id {}, outside the vocabulary of {}", where(), t, id, info.vocab_size));
      if (row.loss_mask[t] > 1) throw InputError(fmt::format("{}: loss_mask[{}] is {}, not 0 or 1", where(), t, row.loss_mask[t]));
    }
  }

  void append(const PackedRow& row) {
    buf.clear();
    for (const auto id : row.tokens) {
      if (info.token_bytes == 2) put<std::uint16_t>(buf, static_cast<std::uint16_t>(id));
      else put<std::uint32_t>(buf, static_cast<std::uint32_t>(id));
    }
    out.write(buf.data(), buf.size());

    buf.clear();
    for (const auto bit : row.loss_mask) {
      mask_byte = static_cast<unsigned char>(mask_byte | (bit << mask_bits));
      if (++mask_bits == 8) {
        buf.push_back(mask_byte);
        mask_byte = 0;
        mask_bits = 0;
      }
    }
    mask.write(buf.data(), buf.size());

    buf.clear();
    for (const auto& doc : row.docs) {
      put<std::uint32_t>(buf, doc.length);
      put<std::uint32_t>(buf, doc.position_offset);
    }
    docs.write(buf.data(), buf.size());

    info.rows += 1;
    info.docs += row.docs.size();
    info.tokens += row.tokens.size();
    row_docs.push_back(info.docs);
    row_offsets.push_back(info.tokens);
  }

  void seal() {
    if (mask_bits > 0) mask.write(&mask_byte, 1);  // unused high bits stay zero
    pad8(out);
    append_scratch(mask, out, buf);
    pad8(out);
    out.write(row_docs.data(), row_docs.size() * sizeof(std::uint64_t));
    append_scratch(docs, out, buf);
    out.write(row_offsets.data(), row_offsets.size() * sizeof(std::uint64_t));
    const auto header = encode_header(info);
    out.write_at(0, header.data(), header.size());

    // The header is final only now, so the checksum is taken by reading the file back (from the
    // page cache, typically) rather than while streaming.
    std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> hash(XXH64_createState(), &XXH64_freeState);
    if (!hash) throw std::bad_alloc();
    XXH64_reset(hash.get(), 0);
    const auto body = out.size();
    for (std::uint64_t offset = 0; offset < body; offset += buf.size()) {
      buf.resize(static_cast<std::size_t>(std::min<std::uint64_t>(kCopyChunk, body - offset)));
      out.read_at(offset, buf.data(), buf.size());
      XXH64_update(hash.get(), buf.data(), buf.size());
    }
    const std::uint64_t digest = XXH64_digest(hash.get());
    out.write(&digest, sizeof digest);
    out.write(kShardEndMagic, sizeof kShardEndMagic);

    const auto layout = shard_layout(info);
    if (!layout || layout->file_bytes != out.size())
      throw Error(fmt::format("{}: internal error: wrote {} bytes, the layout says {}", path, out.size(),
                              layout ? layout->file_bytes : 0));
    out.commit();
    mask.discard();
    docs.discard();
  }
};

ShardWriter::ShardWriter(std::string path, std::uint32_t packing_length, std::uint64_t vocab_size, std::string tokenizer) {
  if (packing_length == 0) throw InputError(path + ": packing_length must be positive");
  if (vocab_size == 0 || vocab_size > kMaxVocab)
    throw InputError(fmt::format("{}: vocab_size {} is outside 1..2^31", path, vocab_size));
  if (tokenizer.size() > kShardMaxTokenizerBytes)
    throw InputError(fmt::format("{}: tokenizer identity of {} bytes exceeds {}", path, tokenizer.size(), kShardMaxTokenizerBytes));
  ShardInfo info;
  info.version = kShardVersion;
  info.packing_length = packing_length;
  info.vocab_size = vocab_size;
  info.token_bytes = vocab_size <= 65536 ? 2 : 4;
  info.tokenizer = std::move(tokenizer);
  state_ = std::make_unique<State>(std::move(path), std::move(info));
  // Reserve the header's bytes; finish() overwrites them once the counts are known.
  const auto placeholder = encode_header(state_->info);
  try {
    state_->out.write(placeholder.data(), placeholder.size());
  } catch (const Error& e) {
    state_->abandon(e);
  }
}

ShardWriter::~ShardWriter() = default;  // AtomicFile destructors remove any temporaries

void ShardWriter::add(const PackedRow& row) {
  if (state_->done) throw Error(state_->path + ": add() after finish() or after a write error");
  state_->validate(row);
  try {
    state_->append(row);
  } catch (const Error& e) {
    state_->abandon(e);
  }
}

ShardInfo ShardWriter::finish() {
  if (state_->done) throw Error(state_->path + ": finish() after finish() or after a write error");
  try {
    state_->seal();
  } catch (const Error& e) {
    state_->abandon(e);
  }
  state_->done = true;
  return state_->info;
}

}  // namespace llmlab
