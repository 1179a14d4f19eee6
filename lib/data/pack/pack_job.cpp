// The pack-data pipeline; see pack_job.hpp.
#include "data/pack/pack_job.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "core/atomic_file.hpp"
#include "core/random.hpp"
#include "data/pack/packer.hpp"
#include "data/pack/staging_dir.hpp"
#include "data/shard/shard_writer.hpp"
#include "data/source/document_reader.hpp"
#include "data/source/render.hpp"

namespace llmlab {

namespace {

using Clock = std::chrono::steady_clock;

// A piece of a document placed in a row.
struct Chunk {
  std::size_t doc;               // index in the window
  std::uint32_t begin, length;   // token range of the document
};

// The reason a bad record is counted under with --skip-bad.
std::string bad_reason(const std::string& message) {
  if (message.find("malformed JSON") != std::string::npos) return "malformed_json";
  if (message.find("UTF-8") != std::string::npos) return "invalid_utf8";
  if (message.find("empty") != std::string::npos) return "empty_document";
  if (message.find("outside the vocabulary") != std::string::npos) return "token_out_of_vocabulary";
  if (message.find("missing") != std::string::npos || message.find("no '") != std::string::npos) return "missing_field";
  return "invalid_record";
}

unsigned thread_count(const DataSettings& s) {
  if (s.threads > 0) return static_cast<unsigned>(s.threads);
  return std::max(1u, std::thread::hardware_concurrency());
}

class Packer {
 public:
  Packer(const DataSettings& s, const Tokenizer& t, const std::string& dir, PackStats& stats)
      : s_(s), tokenizer_(t), renderer_(t, s), dir_(dir), stats_(stats) {}

  void record_bad(const InputError& e) {
    if (!s_.skip_bad) throw e;
    ++stats_.bad[bad_reason(e.what())];
    if (stats_.bad_examples.size() < 10) stats_.bad_examples.push_back(e.what());
  }

  // Tokenizes a window on all cores; results come back in document order whatever the
  // thread count, so the output does not depend on it.
  std::vector<TokenizedDoc> render(const std::vector<RawDocument>& docs) {
    std::vector<TokenizedDoc> out(docs.size());
    std::vector<std::exception_ptr> errors(docs.size());
    std::atomic<std::size_t> next{0};
    auto work = [&] {
      for (std::size_t i = next++; i < docs.size(); i = next++) {
        try {
          out[i] = renderer_.render(docs[i]);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      }
    };
    const unsigned n = std::min<unsigned>(thread_count(s_), static_cast<unsigned>(std::max<std::size_t>(1, docs.size() / 64)));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < n; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    for (std::size_t i = 0; i < docs.size(); ++i) {
      if (!errors[i]) continue;
      try {
        std::rethrow_exception(errors[i]);
      } catch (const InputError& e) {
        record_bad(e);
        out[i].tokens.clear();  // marks it skipped
      }
    }
    return out;
  }

  void pack_window(const std::vector<TokenizedDoc>& docs, std::uint64_t window) {
    const auto L = static_cast<std::uint32_t>(s_.packing_length);
    std::vector<Chunk> chunks;
    for (std::size_t d = 0; d < docs.size(); ++d) {
      const auto n = static_cast<std::uint32_t>(docs[d].tokens.size());
      if (n == 0) continue;  // skipped bad record
      ++stats_.documents;
      ++stats_.length_histogram[static_cast<std::size_t>(std::bit_width(n) - 1)];
      if (n <= L) {
        chunks.push_back({d, 0, n});
        continue;
      }
      switch (s_.overflow) {
        case OverflowPolicy::truncate:
          ++stats_.truncated;
          stats_.truncated_tokens += n - L;
          chunks.push_back({d, 0, L});
          break;
        case OverflowPolicy::drop:
          ++stats_.dropped;
          stats_.dropped_tokens += n;
          --stats_.documents;
          break;
        case OverflowPolicy::split:
          ++stats_.split;
          for (std::uint32_t b = 0; b < n; b += L) chunks.push_back({d, b, std::min(L, n - b)});
          break;
      }
    }
    std::vector<std::uint32_t> lengths;
    for (const auto& c : chunks) lengths.push_back(c.length);
    const auto rows = pack_documents(lengths, L, s_.strategy);
    // Rows come out ordered by the packer (bfd: longest first); a seeded shuffle spreads
    // them so that batches mix long and short documents.
    std::uint64_t seed_state = s_.seed ^ (window * 0x9E3779B97F4A7C15ull);
    const auto order = seeded_permutation(rows.size(), splitmix64(seed_state));
    for (std::uint64_t r : order) {
      PackedRow row;
      for (std::uint32_t c : rows[r]) {
        const Chunk& ch = chunks[c];
        const TokenizedDoc& doc = docs[ch.doc];
        row.tokens.insert(row.tokens.end(), doc.tokens.begin() + ch.begin, doc.tokens.begin() + ch.begin + ch.length);
        row.loss_mask.insert(row.loss_mask.end(), doc.loss_mask.begin() + ch.begin,
                             doc.loss_mask.begin() + ch.begin + ch.length);
        // A continuation chunk keeps counting positions where the previous one stopped.
        row.docs.push_back({ch.length, ch.begin});
      }
      write(row);
    }
    stats_.chunks += chunks.size();
  }

  void write(const PackedRow& row) {
    if (!writer_) {
      const std::string name = fmt::format("shard-{:05d}.bin", stats_.shards.size());
      writer_ = std::make_unique<ShardWriter>(dir_ + "/" + name, static_cast<std::uint32_t>(s_.packing_length),
                                              static_cast<std::uint64_t>(tokenizer_.vocab_size()), tokenizer_.identity());
      writer_name_ = name;
      rows_in_shard_ = 0;
    }
    writer_->add(row);
    ++stats_.rows;
    stats_.tokens += row.tokens.size();
    for (auto m : row.loss_mask) stats_.loss_tokens += m;
    if (++rows_in_shard_ == static_cast<std::uint64_t>(s_.rows_per_shard)) finish_shard();
  }

  void finish_shard() {
    if (!writer_) return;
    stats_.shards.push_back({writer_name_, writer_->finish()});
    writer_.reset();
  }

 private:
  const DataSettings& s_;
  const Tokenizer& tokenizer_;
  DocumentRenderer renderer_;
  std::string dir_;
  PackStats& stats_;
  std::unique_ptr<ShardWriter> writer_;
  std::string writer_name_;
  std::uint64_t rows_in_shard_ = 0;
};

}  // namespace

PackStats pack_dataset(const DataSettings& settings, const Tokenizer& tokenizer, const std::string& tokenizer_path,
                       const std::function<void(const PackProgress&)>& progress) {
  if (settings.inputs.empty()) throw InputError(SourceLoc{}, "data.inputs", "no input files");
  if (settings.packing_length > 0x7fffffff)
    throw InputError(SourceLoc{}, "data.packing_length", "must fit in 31 bits for a shard");
  const auto start = Clock::now();
  StagingDir out(settings.output);
  PackStats stats;
  stats.length_histogram.assign(33, 0);
  Packer packer(settings, tokenizer, out.path(), stats);
  DocumentReader reader(settings.inputs, settings);
  stats.input_bytes = reader.bytes_total();

  auto last_report = Clock::now();
  std::vector<RawDocument> window;
  std::uint64_t window_index = 0;
  bool more = true;
  while (more) {
    window.clear();
    while (window.size() < static_cast<std::size_t>(settings.pack_window)) {
      RawDocument doc;
      try {
        if (!reader.next(doc)) {
          more = false;
          break;
        }
      } catch (const InputError& e) {
        ++stats.records;
        packer.record_bad(e);
        continue;
      }
      ++stats.records;
      window.push_back(std::move(doc));
    }
    if (window.empty()) break;
    packer.pack_window(packer.render(window), window_index++);
    if (progress && (Clock::now() - last_report > std::chrono::milliseconds(500) || !more)) {
      last_report = Clock::now();
      progress({stats.documents, stats.tokens, reader.bytes_read(), reader.bytes_total(),
                std::chrono::duration<double>(Clock::now() - start).count()});
    }
  }
  packer.finish_shard();
  if (stats.rows == 0) throw InputError(SourceLoc{}, "data.inputs", "no documents to pack (every record was empty or bad)");
  stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  write_file_atomic(out.path() + "/manifest.json", pack_manifest(settings, tokenizer, tokenizer_path, stats).dump(2) + "\n");
  out.commit();
  return stats;
}

nlohmann::ordered_json pack_manifest(const DataSettings& s, const Tokenizer& tokenizer, const std::string& tokenizer_path,
                                     const PackStats& st) {
  using json = nlohmann::ordered_json;
  const double slots = static_cast<double>(st.rows) * static_cast<double>(s.packing_length);
  const auto bound = (st.tokens + static_cast<std::uint64_t>(s.packing_length) - 1) / static_cast<std::uint64_t>(s.packing_length);
  json j;
  j["format"] = "llmlab-pack";
  j["version"] = 1;
  j["settings"] = {{"packing_length", s.packing_length},
                   {"strategy", pack_strategy_name(s.strategy)},
                   {"overflow", overflow_name(s.overflow)},
                   {"pack_window", s.pack_window},
                   {"seed", s.seed},
                   {"add_bos", s.add_bos},
                   {"add_eos", s.add_eos}};
  j["inputs"] = s.inputs;
  j["tokenizer"] = {{"identity", tokenizer.identity()}, {"path", tokenizer_path}, {"vocab_size", tokenizer.vocab_size()}};
  j["shards"] = json::array();
  for (const auto& sh : st.shards)
    j["shards"].push_back({{"file", sh.file}, {"rows", sh.info.rows}, {"docs", sh.info.docs}, {"tokens", sh.info.tokens}});
  json histogram = json::array();
  for (std::size_t k = 0; k < st.length_histogram.size(); ++k)
    if (st.length_histogram[k])
      histogram.push_back({{"min_tokens", 1ull << k}, {"max_tokens", (2ull << k) - 1}, {"documents", st.length_histogram[k]}});
  j["stats"] = {{"records", st.records},
                {"documents", st.documents},
                {"chunks", st.chunks},
                {"tokens", st.tokens},
                {"loss_tokens", st.loss_tokens},
                {"rows", st.rows},
                {"slots", static_cast<std::uint64_t>(slots)},
                {"efficiency", slots > 0 ? static_cast<double>(st.tokens) / slots : 0.0},
                {"rows_lower_bound", bound},
                {"truncated", st.truncated},
                {"truncated_tokens", st.truncated_tokens},
                {"split", st.split},
                {"dropped", st.dropped},
                {"dropped_tokens", st.dropped_tokens},
                {"bad_records", st.bad},
                {"bad_examples", st.bad_examples},
                {"length_histogram", histogram}};
  j["timing"] = {{"seconds", st.seconds},
                 {"tokens_per_second", st.seconds > 0 ? static_cast<double>(st.tokens) / st.seconds : 0.0},
                 {"input_bytes", st.input_bytes},
                 {"input_mb_per_second", st.seconds > 0 ? static_cast<double>(st.input_bytes) / 1e6 / st.seconds : 0.0}};
  return j;
}

nlohmann::json read_manifest(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  std::ifstream in(path);
  if (!in) throw InputError(SourceLoc{path, 0, 0}, "", "no pack-data manifest here");
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    if (!j.is_object() || j.value("format", "") != "llmlab-pack")
      throw InputError(SourceLoc{path, 0, 0}, "format", "not a pack-data manifest");
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(SourceLoc{path, 0, 0}, "", std::string("malformed manifest: ") + e.what());
  }
}

}  // namespace llmlab
