// rl-train: `rl-train RECIPE [key=value ...]` improves a policy with Kimi k1.5-style RL on
// verifiable rewards; `tasks` writes a built-in task as JSONL (prompts, or SFT records),
// `merge` averages two checkpoints, `sft-set` keeps the shortest correct of rollout.n samples.
#include "tools/rl_train_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/text.hpp"
#include "recipe/recipe.hpp"
#include "rl/builtin_tasks.hpp"
#include "rl/long2short.hpp"
#include "rl/problem_file.hpp"
#include "rl/problem_set.hpp"
#include "rl/rl_trainer.hpp"
#include "rl/rollout_bench.hpp"
#include "tools/cli.hpp"

namespace llmlab {

namespace {

Recipe load_rl_recipe(const std::string& path, const std::vector<std::string>& overrides, std::ostream& err,
                      bool speak) {
  if (path.empty()) throw InputError("no recipe given (usage: rl-train RECIPE [key=value ...]; see --help)");
  Recipe recipe = resolve_rl_recipe(load_recipe(path, overrides));
  if (speak)
    for (const auto& w : recipe.warnings) err << "rl-train: warning: " << single_line(w) << "\n";
  return recipe;
}

int tasks_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"rl-train tasks: write the recipe's built-in task as JSONL prompts (or SFT records with --sft)"};
  app.name("rl-train tasks");
  std::string recipe_path, output;
  std::vector<std::string> overrides;
  bool sft = false, json = false;
  app.add_option("recipe", recipe_path, "recipe YAML (task.* keys)")->required();
  app.add_option("overrides", overrides, "dotted key=value overrides, e.g. task.count=5000 task.style=mixed");
  app.add_option("--out", output, "JSONL file to write (atomically)")->required();
  app.add_flag("--sft", sft, "prompt/completion records of the worked solutions (task.style), for pack-data and train");
  app.add_flag("--json", json, "print a JSON summary");
  return run_cli(app, args, out, err, [&] {
    const Recipe recipe = load_rl_recipe(recipe_path, overrides, err, true);
    const BuiltinTaskSettings b = builtin_settings(recipe);
    const std::vector<Problem> problems = make_builtin_problems(b);
    write_problems(output, problems, sft);
    if (json)
      out << nlohmann::json{{"output", output}, {"problems", problems.size()}, {"task", builtin_task_name(b.task)},
                            {"sft", sft}, {"style", solution_style_name(b.style)}}.dump() << "\n";
    else
      out << fmt::format("wrote {} {} {} to {}\n", problems.size(), builtin_task_name(b.task),
                         sft ? fmt::format("SFT records ({} solutions)", solution_style_name(b.style)) : "problems", output);
    return 0;
  });
}

int merge_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"rl-train merge: average two policies' weights (k1.5 long2short model merging)"};
  app.name("rl-train merge");
  std::string a, b, output;
  double alpha = 0.5;
  bool json = false;
  app.add_option("a", a, "first model: safetensors file or checkpoint directory")->required();
  app.add_option("b", b, "second model, same architecture")->required();
  app.add_option("--out", output, "output directory (model.safetensors, config.json)")->required();
  app.add_option("--alpha", alpha, "weight of the first model: out = alpha a + (1 - alpha) b");
  app.add_flag("--json", json, "print a JSON summary");
  return run_cli(app, args, out, err, [&] {
    const std::int64_t n = merge_weights(a, b, alpha, output);
    if (json) out << nlohmann::json{{"output", output}, {"tensors", n}, {"alpha", alpha}}.dump() << "\n";
    else out << fmt::format("merged {} tensors ({} x {} + {} x {}) into {}\n", n, alpha, a, 1 - alpha, b, output);
    return 0;
  });
}

int sft_set_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"rl-train sft-set: shortest-correct rejection sampling (k1.5 long2short): for each problem keep the "
               "shortest of rollout.n samples that the verifier accepts"};
  app.name("rl-train sft-set");
  std::string recipe_path, output, init_from;
  std::vector<std::string> overrides;
  std::int64_t max_problems = 0;
  bool json = false;
  app.add_option("recipe", recipe_path, "recipe YAML (model, task.*, rollout.*)")->required();
  app.add_option("overrides", overrides, "dotted key=value overrides");
  app.add_option("--init-from", init_from, "the policy: safetensors or checkpoint directory")->required();
  app.add_option("--out", output, "JSONL prompt/completion file to write")->required();
  app.add_option("--max-problems", max_problems, "problems sampled (default: all)");
  app.add_flag("--json", json, "print a JSON summary");
  return run_cli(app, args, out, err, [&] {
    const Recipe recipe = load_rl_recipe(recipe_path, overrides, err, true);
    require_model(recipe);
    const SftSetStats s = write_shortest_correct(recipe, init_from, output, max_problems);
    if (json)
      out << nlohmann::json{{"output", output}, {"problems", s.problems}, {"kept", s.kept},
                            {"kept_length_mean", s.kept_length_mean}, {"sampled_length_mean", s.sampled_length_mean}}
                 .dump()
          << "\n";
    else
      out << fmt::format("kept {} of {} problems; mean response {:.1f} tokens (sampled: {:.1f}) -> {}\n", s.kept,
                         s.problems, s.kept_length_mean, s.sampled_length_mean, output);
    return 0;
  });
}

int bench_rollout_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"rl-train bench-rollout: rollout throughput with the KV cache against recomputing the whole prefix "
               "for every token (same model, prompts and seeds)"};
  app.name("rl-train bench-rollout");
  std::string recipe_path, init_from;
  std::vector<std::string> overrides;
  int repeats = 3;
  bool json = false;
  app.add_option("recipe", recipe_path, "recipe YAML (model, task.*, rollout.n, data.*)")->required();
  app.add_option("overrides", overrides, "dotted key=value overrides");
  app.add_option("--init-from", init_from, "a policy (default: seeded random weights)");
  app.add_option("--repeats", repeats, "timed repeats (median reported)")->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "print one JSON object");
  return run_cli(app, args, out, err, [&] {
    const Recipe recipe = load_rl_recipe(recipe_path, overrides, err, true);
    require_model(recipe);
    const RolloutBenchResult r = bench_rollout(recipe, init_from, repeats);
    const double ratio = r.cached_seconds > 0 ? r.recompute_seconds / r.cached_seconds : 0;
    const auto tokens = static_cast<double>(r.new_tokens);
    if (json) {
      out << nlohmann::json{{"sequences", r.sequences}, {"new_tokens", r.new_tokens},
                            {"cached_seconds", r.cached_seconds}, {"recompute_seconds", r.recompute_seconds},
                            {"cached_tokens_per_second", tokens / r.cached_seconds},
                            {"recompute_tokens_per_second", tokens / r.recompute_seconds},
                            {"speedup", ratio}, {"same_sequences", r.same_sequences}}.dump()
          << "\n";
    } else {
      out << fmt::format("{} sequences, {} new tokens: KV cache {:.3f} s ({:.0f} tokens/s), recompute {:.3f} s "
                         "({:.0f} tokens/s): {:.1f}x; identical responses: {:.1f}%\n",
                         r.sequences, r.new_tokens, r.cached_seconds, tokens / r.cached_seconds,
                         r.recompute_seconds, tokens / r.recompute_seconds, ratio, 100 * r.same_sequences);
    }
    return 0;
  });
}

}  // namespace

int rl_train_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (!args.empty()) {
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    if (args[0] == "tasks") return tasks_main(rest, out, err);
    if (args[0] == "merge") return merge_main(rest, out, err);
    if (args[0] == "sft-set") return sft_set_main(rest, out, err);
    if (args[0] == "bench-rollout") return bench_rollout_main(rest, out, err);
  }
  CLI::App app{"rl-train: reinforcement learning with verifiable rewards (Kimi k1.5: squared surrogate with a "
               "mean-reward baseline, length penalty, curriculum/prioritised sampling, partial rollouts).\n"
               "Also: rl-train tasks | merge | sft-set | bench-rollout (see rl-train <command> --help)"};
  app.name("rl-train");
  std::string recipe_path;
  std::vector<std::string> overrides;
  RlOptions o;
  app.add_option("recipe", recipe_path, "recipe YAML (model, task.*, rollout.*, algorithm.*, optim.*, output.*)");
  app.add_option("overrides", overrides, "dotted key=value overrides, e.g. train.steps=50 rollout.n=8");
  app.add_flag("--json", o.json, "one JSON object per iteration on stdout, then {\"summary\": ...}");
  app.add_flag("--resume", o.resume, "continue from the latest checkpoint in output.dir");
  app.add_option("--init-from", o.init_from, "the starting policy: safetensors or a train checkpoint directory");
  app.add_flag("--quiet", o.quiet, "no progress lines");
  return run_cli(app, args, out, err, [&] {
    if (o.resume && !o.init_from.empty()) throw InputError("--resume and --init-from exclude each other");
    o.launch = detect_launch();
    if (recipe_path.empty()) throw InputError("no recipe given (usage: rl-train RECIPE [key=value ...]; see --help)");
    if (o.launch.world_size > 1) overrides.push_back(fmt::format("dist.world_size={}", o.launch.world_size));
    const Recipe recipe = load_rl_recipe(recipe_path, overrides, err, o.launch.rank == 0);
    require_model(recipe);
    return run_rl_training(recipe, o, out, err);
  });
}

}  // namespace llmlab
