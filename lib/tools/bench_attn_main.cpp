// bench-attn: reads bench.* settings from an optional recipe and key=value overrides (the
// `bench.` prefix may be left out on the command line), runs the sweep, prints a table, JSON
// lines or CSV, and optionally writes the JSON lines to a file.
#include "tools/bench_attn_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <sstream>

#include "bench/attention_report.hpp"
#include "bench/attention_sweep.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/text.hpp"
#include "recipe/raw_config.hpp"
#include "recipe/recipe.hpp"
#include "tools/cli.hpp"

namespace llmlab {

namespace {

struct Options {
  std::vector<std::string> args;  // [RECIPE] key=value ...
  bool json = false;
  bool csv = false;
  bool quiet = false;
  bool print_config = false;
  bool list_keys = false;
  std::string output;
};

// "seq_lens=1024" means "bench.seq_lens=1024": bench-attn's keys all live under bench.
std::string qualified(const std::string& assignment) {
  const auto eq = assignment.find('=');
  const std::string key = assignment.substr(0, eq);
  return key.find('.') == std::string::npos ? "bench." + assignment : assignment;
}

Recipe read_settings(const Options& o) {
  std::string recipe_path;
  std::vector<std::string> overrides;
  for (const std::string& a : o.args) {
    if (a.find('=') != std::string::npos) overrides.push_back(qualified(a));
    else if (recipe_path.empty()) recipe_path = a;
    else throw InputError(fmt::format("more than one recipe given ('{}' and '{}'); overrides are key=value", recipe_path, a));
  }
  RawConfig raw;
  if (!recipe_path.empty()) raw = load_raw_config(recipe_path);
  for (const std::string& ov : overrides) apply_override(raw, ov);
  return bind_recipe(raw);
}

int run(const Options& o, std::ostream& out, std::ostream& err) {
  if (o.list_keys) {
    std::istringstream keys(describe_keys());
    for (std::string line; std::getline(keys, line);)
      if (line.rfind("bench.", 0) == 0) out << line << "\n";
    return 0;
  }
  const Recipe recipe = read_settings(o);
  for (const auto& w : recipe.warnings) err << "bench-attn: warning: " << single_line(w) << "\n";
  if (o.print_config) {
    out << resolved_yaml(recipe);
    return 0;
  }
  if (o.json && o.csv) throw InputError("--json and --csv both given; choose one output format");

  SweepHooks hooks;
  if (!o.quiet) hooks.progress = [&](const std::string& line) { err << "bench-attn: " << line << "\n" << std::flush; };
  if (o.json) hooks.row = [&](const AttentionRow& r) { out << attention_row_json(r).dump() << "\n" << std::flush; };
  if (o.csv) {
    out << attention_csv_header() << "\n";
    hooks.row = [&](const AttentionRow& r) { out << attention_csv_line(r) << "\n" << std::flush; };
  }
  const std::vector<AttentionRow> rows =
      run_attention_sweep(recipe.bench, hooks, [&](const std::string& key) { return recipe.locate(key); });

  if (!o.json && !o.csv) {
    out << fmt::format("bench-attn on {}, {}; FLOPs: forward 4 s^2 h d per document (causal /2), backward 2.5x; "
                       "errors vs float64 at sampled rows/columns\n",
                       rows.empty() ? bench_device_label(recipe.bench) : rows.front().device, rows.empty() ? "" : rows.front().dtype);
    print_attention_table(rows, out);
  }
  if (!o.output.empty()) {
    std::string lines;
    for (const AttentionRow& r : rows) lines += attention_row_json(r).dump() + "\n";
    write_file_atomic(o.output, lines);
  }
  std::vector<std::string> bad;
  for (const AttentionRow& r : rows)
    if (r.skipped.empty() && !r.error_ok)
      bad.push_back(fmt::format("{} {} {} (error {:.3g}, naive {:.3g})", r.impl, r.shape.label(), bench_mode_name(r.mode),
                                r.max_abs_err, r.naive_err));
  if (!bad.empty())
    throw Error(fmt::format("{} measurement{} broke the error rule (at most 2x naive's): {}", bad.size(),
                            bad.size() == 1 ? "" : "s", join(bad, "; ")));
  return 0;
}

}  // namespace

int bench_attn_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{
      "bench-attn: time naive vs flash attention (forward, backward, causal, varlen) on cpu or cuda, checked "
      "against a float64 reference.\nExample: bench-attn device=cpu seq_lens=1024,8192 head_dim=64 causal=true mode=fwd --json"};
  app.name("bench-attn");
  Options o;
  app.add_option("args", o.args,
                 "an optional recipe YAML, then key=value settings (bench.* keys; the bench. prefix may be omitted; "
                 "lists as a,b,c); see --list-keys");
  app.add_flag("--json", o.json, "print one JSON object per measurement (JSON lines) instead of the table");
  app.add_flag("--csv", o.csv, "print CSV (the JSON fields) instead of the table");
  app.add_option("--output", o.output, "also write the JSON lines to this file (atomically)");
  app.add_flag("--quiet", o.quiet, "no progress lines on stderr");
  app.add_flag("--print-config", o.print_config, "print the fully resolved recipe as YAML and exit");
  app.add_flag("--list-keys", o.list_keys, "list bench-attn's keys with their types, defaults and meanings");
  return run_cli(app, args, out, err, [&] { return run(o, out, err); });
}

}  // namespace llmlab
