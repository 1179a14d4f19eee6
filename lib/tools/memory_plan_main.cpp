// memory-plan: reads a recipe, prints its Plan (table or JSON), the resolved recipe, a sweep,
// or the fastest configuration that fits (--fit).
#include "tools/memory_plan_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/table.hpp"
#include "core/text.hpp"
#include "core/units.hpp"
#include "plan/fit.hpp"
#include "plan/report.hpp"
#include "recipe/recipe.hpp"
#include "tools/cli.hpp"
#include "tools/recipe_plan.hpp"
#include "tools/sweep.hpp"

namespace llmlab {

namespace {

struct Options {
  std::string recipe;
  std::vector<std::string> overrides;
  bool json = false;
  bool print_config = false;
  bool list_keys = false;
  bool slots = false;
  bool fit = false;
  std::string fit_memory;
  std::vector<std::string> sweeps;
};

bool from_command_line(const Recipe& r, const std::string& key) { return r.where(key).file == "command line"; }

// The overrides that turn the recipe into the candidate, as a runnable command line.
std::string recommendation_command(const Options& o, const Recipe& r, const RunSettings& best, std::uint64_t memory) {
  // Overrides the user gave are repeated; --fit SIZE becomes hardware.memory=SIZE.
  std::vector<std::string> parts{"memory-plan", o.recipe};
  for (const auto& ov : o.overrides) parts.push_back(ov);
  auto add = [&](const std::string& key, const std::string& value) { parts.push_back(key + "=" + value); };
  if (best.zero.stage != r.zero.stage) add("zero.stage", std::to_string(best.zero.stage));
  if (best.checkpointing.policy != r.checkpointing.policy) add("checkpointing.policy", policy_name(best.checkpointing.policy));
  if (best.checkpointing.policy == CheckpointPolicy::selective && best.checkpointing.selective != r.checkpointing.selective)
    add("checkpointing.selective", selective_name(best.checkpointing.selective));
  if (best.checkpointing.budget != r.checkpointing.budget) add("checkpointing.budget", std::to_string(best.checkpointing.budget));
  if (best.train.micro_batch_size != r.train.micro_batch_size) {
    add("train.micro_batch_size", std::to_string(best.train.micro_batch_size));
    add("train.gradient_accumulation_steps", std::to_string(best.train.gradient_accumulation_steps));
  }
  if (memory != 0) add("hardware.memory", o.fit_memory);
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : " ") + p;
  return s;
}

int run_fit(const Options& o, const Recipe& recipe, std::uint64_t memory, std::ostream& out) {
  const RunSettings base = resolved_run_settings(recipe, memory);
  const FitSpace space{!from_command_line(recipe, "zero.stage"), !from_command_line(recipe, "checkpointing.policy"),
                       !from_command_line(recipe, "train.micro_batch_size") &&
                           !from_command_line(recipe, "train.gradient_accumulation_steps")};
  const Plan as_written = make_plan(recipe.model, base);
  const FitResult fit = fit_search(recipe.model, base, space);

  if (o.json) {
    nlohmann::ordered_json j;
    j["fits"] = fit.best.has_value();
    j["reason"] = fit.reason;
    j["recipe_plan"] = plan_json(as_written);
    if (fit.best) {
      const auto& b = fit.tried[*fit.best];
      j["recommended"] = plan_json(make_plan(recipe.model, b.run));
      j["command"] = recommendation_command(o, recipe, b.run, memory);
    }
    j["candidates"] = nlohmann::ordered_json::array();
    for (const auto& c : fit.tried)
      j["candidates"].push_back({{"zero_stage", c.run.zero.stage},
                                 {"checkpointing", c.checkpointing},
                                 {"micro_batch_size", c.run.train.micro_batch_size},
                                 {"gradient_accumulation_steps", c.run.train.gradient_accumulation_steps},
                                 {"peak_bytes", c.peak_bytes},
                                 {"step_seconds", c.step_seconds},
                                 {"fits", c.fits}});
    out << j.dump(2) << "\n";
    return fit.best ? 0 : 1;
  }

  out << fmt::format("recipe as written: peak {} of {} ({})\n", format_bytes(static_cast<double>(as_written.peak_bytes)),
                     format_bytes(static_cast<double>(as_written.memory_limit)), as_written.fits ? "fits" : "does not fit");
  std::vector<std::string> fixed;
  if (!space.vary_stage) fixed.push_back("zero.stage");
  if (!space.vary_policy) fixed.push_back("checkpointing.policy");
  if (!space.vary_micro_batch) fixed.push_back("micro-batch");
  if (!fixed.empty()) {
    std::string list;
    for (const auto& f : fixed) list += (list.empty() ? "" : ", ") + f;
    out << "held fixed (given on the command line): " << list << "\n";
  }
  if (!fit.best) {
    out << fit.reason << "\n";
    return 1;
  }
  out << "recommended: " << fit.reason << "\n  " << recommendation_command(o, recipe, fit.tried[*fit.best].run, memory)
      << "\n\n";

  std::vector<const FitCandidate*> ranked;
  for (const auto& c : fit.tried)
    if (c.fits) ranked.push_back(&c);
  std::sort(ranked.begin(), ranked.end(), [](auto* a, auto* b) { return a->step_seconds < b->step_seconds; });
  Table t;
  t.column("ZeRO").column("micro-batch").column("checkpointing", Table::Align::left).column("peak GiB").column("step");
  for (std::size_t i = 0; i < std::min<std::size_t>(8, ranked.size()); ++i) {
    const auto& c = *ranked[i];
    t.row({std::to_string(c.run.zero.stage),
           fmt::format("{} x {}", c.run.train.micro_batch_size, c.run.train.gradient_accumulation_steps), c.checkpointing,
           format_gib(static_cast<double>(c.peak_bytes)), format_seconds(c.step_seconds)});
  }
  out << "fastest fitting configurations\n";
  t.print(out, "  ");
  out << "\n";
  print_plan(make_plan(recipe.model, fit.tried[*fit.best].run), out, {o.slots});
  return 0;
}

int run(const Options& o, std::ostream& out, std::ostream& err) {
  if (o.list_keys) {
    out << describe_keys();
    return 0;
  }
  if (o.recipe.empty()) throw InputError("no recipe given (usage: memory-plan RECIPE [key=value ...]; see --help)");
  if (o.sweeps.size() > 2) throw InputError("--sweep takes one or two keys");
  if (o.fit && !o.sweeps.empty()) throw InputError("--fit and --sweep cannot be combined");

  std::uint64_t memory = 0;
  if (o.fit && !o.fit_memory.empty()) {
    const auto b = parse_bytes(o.fit_memory);
    if (!b || *b == 0) throw InputError(SourceLoc{"--fit", 0, 0}, "", "expected a memory size such as 80GiB, got '" + o.fit_memory + "'");
    memory = *b;
  }

  RawConfig raw = load_raw_config(o.recipe);
  for (const auto& ov : o.overrides) apply_override(raw, ov);
  const Recipe recipe = bind_recipe(raw);
  require_model(recipe);
  for (const auto& w : recipe.warnings) err << "memory-plan: warning: " << single_line(w) << "\n";

  if (o.print_config) {
    out << resolved_yaml(recipe);
    return 0;
  }
  if (!o.sweeps.empty()) {
    std::vector<SweepAxis> axes;
    for (const auto& s : o.sweeps) axes.push_back(parse_sweep_axis(s));
    const auto rows = run_sweep(raw, axes, memory);
    if (o.json)
      out << sweep_json(axes, rows).dump(2) << "\n";
    else
      print_sweep(axes, rows, out);
    return 0;
  }
  if (o.fit) return run_fit(o, recipe, memory, out);

  const Plan plan = plan_recipe(recipe, memory);
  if (o.json) {
    nlohmann::ordered_json j = plan_json(plan);
    j["recipe"] = o.recipe;
    j["warnings"] = recipe.warnings;
    out << j.dump(2) << "\n";
  } else {
    print_plan(plan, out, {o.slots});
  }
  return 0;
}

}  // namespace

int memory_plan_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"memory-plan: per-rank peak memory, where it goes, and the compute of a training step, "
               "planned from a recipe before launching it"};
  app.name("memory-plan");
  Options o;
  app.add_option("recipe", o.recipe, "recipe YAML (e.g. recipes/llama2/7b_pretrain_8gpu.yaml)");
  app.add_option("overrides", o.overrides, "dotted key=value overrides, e.g. zero.stage=3 train.micro_batch_size=4");
  app.add_flag("--json", o.json, "print JSON for scripts");
  app.add_flag("--print-config", o.print_config, "print the fully resolved recipe as YAML and exit");
  app.add_flag("--list-keys", o.list_keys, "list every recipe key with its type, default and meaning");
  app.add_flag("--slots", o.slots, "also list every activation slot of each block kind");
  app.add_option("--fit", o.fit_memory,
                 "search ZeRO stage, checkpointing and micro-batch for the fastest configuration fitting SIZE "
                 "(default: hardware.memory); keys given on the command line stay fixed; exit 1 if nothing fits")
      ->expected(0, 1)
      ->allow_extra_args(false);
  // One value per --sweep; what follows it is an override, not another sweep value.
  app.add_option("--sweep", o.sweeps, "key=v1,v2,... or key=a..b[:step]; give one or two")->allow_extra_args(false);

  return run_cli(app, args, out, err, [&] {
    o.fit = app.count("--fit") > 0;
    // `--fit zero.stage=1`: the optional SIZE swallowed an override; give it back.
    if (o.fit_memory.find('=') != std::string::npos) {
      o.overrides.push_back(o.fit_memory);
      o.fit_memory.clear();
    }
    return run(o, out, err);
  });
}

}  // namespace llmlab
