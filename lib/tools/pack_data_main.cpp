// pack-data: tokenize and pack a dataset into shards (`pack-data RECIPE [key=value ...]`), or
// show what a shard holds (`pack-data inspect SHARD`).
#include "tools/pack_data_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "core/error.hpp"
#include "core/table.hpp"
#include "core/text.hpp"
#include "core/units.hpp"
#include "data/pack/pack_job.hpp"
#include "data/pack/packer.hpp"
#include "data/shard/shard_reader.hpp"
#include "data/tokenizer/tokenizer.hpp"
#include "recipe/recipe.hpp"
#include "tools/cli.hpp"

namespace llmlab {

namespace {

struct Options {
  std::string recipe;
  std::vector<std::string> overrides;
  bool json = false;
  bool skip_bad = false;
  bool quiet = false;
  // inspect
  std::string shard;
  std::string rows = "0..2";
  std::string tokenizer;
  bool show_mask = false;
};

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& spec) {
  if (spec == "byte") return make_byte_tokenizer();
  return load_hf_tokenizer(spec);
}

void print_summary(const PackStats& st, const DataSettings& s, std::ostream& out) {
  const double slots = static_cast<double>(st.rows) * static_cast<double>(s.packing_length);
  const auto bound = (st.tokens + static_cast<std::uint64_t>(s.packing_length) - 1) / static_cast<std::uint64_t>(s.packing_length);
  Table t;
  t.column("statistic", Table::Align::left).column("value");
  t.row({"documents", format_count(st.documents)});
  t.row({"tokens", format_count(st.tokens)});
  t.row({"trained tokens (loss mask)", format_count(st.loss_tokens)});
  t.row({fmt::format("rows of {}", s.packing_length), format_count(st.rows)});
  t.row({"packing efficiency", fmt::format("{:.2f}%", slots > 0 ? 100.0 * static_cast<double>(st.tokens) / slots : 0.0)});
  t.row({"rows vs lower bound", fmt::format("{} vs {}", format_count(st.rows), format_count(bound))});
  t.row({"split / truncated / dropped", fmt::format("{} / {} / {}", st.split, st.truncated, st.dropped)});
  std::uint64_t bad = 0;
  for (const auto& [reason, n] : st.bad) bad += n;
  t.row({"bad records skipped", format_count(bad)});
  t.row({"shards", std::to_string(st.shards.size())});
  t.row({"time", fmt::format("{} ({} tokens/s, {:.1f} MB/s of input)", format_seconds(st.seconds),
                             format_count(static_cast<std::uint64_t>(static_cast<double>(st.tokens) / std::max(st.seconds, 1e-9))),
                             static_cast<double>(st.input_bytes) / 1e6 / std::max(st.seconds, 1e-9))});
  out << fmt::format("packed {} into {} ({}, {})\n", s.inputs.size() == 1 ? s.inputs[0] : fmt::format("{} files", s.inputs.size()),
                     s.output, pack_strategy_name(s.strategy), s.tokenizer == "byte" ? "byte-level" : s.tokenizer);
  t.print(out);
  for (const auto& [reason, n] : st.bad) out << fmt::format("  skipped {} x {}\n", n, reason);
}

int run_pack(const Options& o, std::ostream& out, std::ostream& err) {
  if (o.recipe.empty()) throw InputError("no recipe given (usage: pack-data RECIPE [key=value ...]; see --help)");
  Recipe recipe = load_recipe(o.recipe, o.overrides);
  for (const auto& w : recipe.warnings) err << "pack-data: warning: " << single_line(w) << "\n";
  DataSettings s = recipe.data;
  if (o.skip_bad) s.skip_bad = true;
  if (s.inputs.empty())
    throw InputError(SourceLoc{o.recipe, 0, 0}, "data.inputs", "no input files: set data.inputs in the recipe or on the command line");
  const auto tokenizer = open_tokenizer(s.tokenizer);
  const bool tty = ::isatty(2) != 0;
  auto progress = [&](const PackProgress& p) {
    if (o.quiet) return;
    const double frac = p.bytes_total ? static_cast<double>(p.bytes_read) / static_cast<double>(p.bytes_total) : 0.0;
    const double eta = frac > 0 ? p.seconds * (1 - frac) / frac : 0.0;
    err << fmt::format("pack-data: {} documents, {} tokens, {} tokens/s, {:.0f}% read, {}{}",
                       format_count(p.documents), format_short_count(static_cast<double>(p.tokens)),
                       format_short_count(static_cast<double>(p.tokens) / std::max(p.seconds, 1e-9)), 100 * frac,
                       frac >= 1 ? "done" : "ETA " + format_seconds(eta), tty ? "   \r" : "\n");
  };
  const PackStats stats = pack_dataset(s, *tokenizer, s.tokenizer, progress);
  if (tty && !o.quiet) err << "\n";
  if (o.json)
    out << pack_manifest(s, *tokenizer, s.tokenizer, stats).dump(2) << "\n";
  else
    print_summary(stats, s, out);
  return 0;
}

// "a..b" or "n" -> [first, last].
std::pair<std::uint64_t, std::uint64_t> row_range(const std::string& text, std::uint64_t rows) {
  const auto dots = text.find("..");
  try {
    std::size_t used = 0;
    const std::uint64_t a = std::stoull(text.substr(0, dots), &used);
    std::uint64_t b = a;
    if (dots != std::string::npos) b = std::stoull(text.substr(dots + 2));
    if (b < a) throw std::invalid_argument("reversed");
    return {std::min(a, rows), std::min(b, rows == 0 ? 0 : rows - 1)};
  } catch (const std::exception&) {
    throw InputError(SourceLoc{"--rows", 0, 0}, "", "expected a row number or a range a..b, got '" + text + "'");
  }
}

int run_inspect(const Options& o, std::ostream& out) {
  const ShardReader reader(o.shard);  // verifies header, sizes and checksum
  const ShardInfo& info = reader.info();
  std::string tokenizer_spec = o.tokenizer;
  if (tokenizer_spec.empty()) {
    const auto dir = std::filesystem::path(o.shard).parent_path().string();
    const auto manifest = read_manifest(dir.empty() ? "." : dir);
    tokenizer_spec = manifest["tokenizer"]["path"].get<std::string>();
  }
  const auto tokenizer = open_tokenizer(tokenizer_spec);
  if (tokenizer->identity() != info.tokenizer)
    throw InputError(SourceLoc{o.shard, 0, 0}, "tokenizer",
                     fmt::format("the shard was packed with '{}' but '{}' is '{}'", info.tokenizer, tokenizer_spec,
                                 tokenizer->identity()));
  const auto [first, last] = row_range(o.rows, info.rows);

  nlohmann::ordered_json j;
  j["shard"] = o.shard;
  j["checksum"] = "ok";
  j["info"] = {{"version", info.version}, {"packing_length", info.packing_length}, {"vocab_size", info.vocab_size},
               {"rows", info.rows},       {"docs", info.docs},                     {"tokens", info.tokens},
               {"token_bytes", info.token_bytes}, {"tokenizer", info.tokenizer}};
  j["rows"] = nlohmann::ordered_json::array();
  if (!o.json)
    out << fmt::format("{}: {} rows of {}, {} document chunks, {} tokens ({:.2f}% of slots), checksum ok\n", o.shard,
                       format_count(info.rows), info.packing_length, format_count(info.docs), format_count(info.tokens),
                       info.rows ? 100.0 * static_cast<double>(info.tokens) / (static_cast<double>(info.rows) * info.packing_length) : 0.0);
  for (std::uint64_t r = first; info.rows > 0 && r <= last; ++r) {
    const PackedRow row = reader.row(r);
    nlohmann::ordered_json jr{{"index", r}, {"tokens", row.tokens.size()}, {"docs", nlohmann::ordered_json::array()}};
    if (!o.json) out << fmt::format("\n=== row {}: {} documents, {}/{} tokens\n", r, row.docs.size(), row.tokens.size(), info.packing_length);
    std::size_t at = 0;
    for (std::size_t d = 0; d < row.docs.size(); ++d) {
      const PackedDoc& doc = row.docs[d];
      std::string text;
      std::uint64_t trained = 0;
      // Decode run by run of equal loss mask, so trained spans can be marked.
      for (std::size_t i = at; i < at + doc.length;) {
        std::size_t k = i;
        while (k < at + doc.length && row.loss_mask[k] == row.loss_mask[i]) ++k;
        const std::string piece = tokenizer->decode(std::span<const std::int32_t>(row.tokens.data() + i, k - i));
        if (row.loss_mask[i]) trained += k - i;
        text += o.show_mask && row.loss_mask[i] ? "⟪" + piece + "⟫" : piece;
        i = k;
      }
      jr["docs"].push_back({{"length", doc.length}, {"position_offset", doc.position_offset}, {"loss_tokens", trained}, {"text", text}});
      if (!o.json)
        out << fmt::format("--- document {} ({} tokens, positions {}..{}, {} trained) ---\n{}\n", d, doc.length,
                           doc.position_offset, doc.position_offset + doc.length - 1, trained, text);
      at += doc.length;
    }
    j["rows"].push_back(jr);
  }
  if (o.json) out << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  return 0;
}

}  // namespace

int pack_data_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"pack-data: tokenize datasets and pack documents into fixed-length rmpad rows (shards + manifest)"};
  app.name("pack-data");
  Options o;
  app.add_option("recipe", o.recipe, "recipe YAML (data.inputs, data.tokenizer, data.packing_length, ...)");
  app.add_option("overrides", o.overrides, "dotted key=value overrides, e.g. data.packing_length=4096 data.strategy=greedy");
  app.add_flag("--json", o.json, "print the manifest (stats) as JSON");
  app.add_flag("--skip-bad", o.skip_bad, "count and skip bad records instead of stopping at the first");
  app.add_flag("--quiet", o.quiet, "no progress lines");
  CLI::App* inspect = app.add_subcommand("inspect", "decode rows of a shard with document boundaries; verifies its checksum");
  inspect->add_option("shard", o.shard, "a shard file")->required();
  inspect->add_option("--rows", o.rows, "a row or a range a..b (default 0..2)");
  inspect->add_option("--tokenizer", o.tokenizer, "byte or a tokenizer.json (default: the one in the shard's manifest)");
  inspect->add_flag("--show-mask", o.show_mask, "wrap trained (loss-mask) tokens in ⟪ ⟫");
  inspect->add_flag("--json", o.json, "print JSON");
  app.require_subcommand(0, 1);

  return run_cli(app, args, out, err, [&] { return inspect->parsed() ? run_inspect(o, out) : run_pack(o, out, err); });
}

}  // namespace llmlab
