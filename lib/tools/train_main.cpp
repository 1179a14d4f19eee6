// train: `train RECIPE [key=value ...]` trains on the recipe's data.shards, writing metrics
// and checkpoints under output.dir; --resume continues a run bit-exactly.
#include "tools/train_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/error.hpp"
#include "core/text.hpp"
#include "recipe/recipe.hpp"
#include "tools/cli.hpp"
#include "train/trainer.hpp"

namespace llmlab {

int train_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"train: train a GPT-2/Llama-style decoder on packed shards (pack-data output) from a YAML recipe"};
  app.name("train");
  std::string recipe_path;
  std::vector<std::string> overrides;
  TrainOptions o;
  app.add_option("recipe", recipe_path, "recipe YAML (model, data.shards, train.*, optim.*, checkpointing.*, output.*)");
  app.add_option("overrides", overrides, "dotted key=value overrides, e.g. train.steps=200 optim.lr=1e-3");
  app.add_flag("--json", o.json, "one JSON object per logged step on stdout, then {\"summary\": ...}");
  app.add_flag("--resume", o.resume, "continue from the latest checkpoint in output.dir (bit-exact)");
  app.add_option("--init-from", o.init_from, "start from safetensors weights (Hugging Face names) or a checkpoint directory");
  app.add_flag("--quiet", o.quiet, "no progress lines");
  return run_cli(app, args, out, err, [&] {
    if (recipe_path.empty()) throw InputError("no recipe given (usage: train RECIPE [key=value ...]; see --help)");
    if (o.resume && !o.init_from.empty()) throw InputError("--resume and --init-from exclude each other");
    o.launch = detect_launch();
    Recipe recipe = load_recipe(recipe_path, overrides);
    // The launcher decides the world size; a recipe that plans for another one is a mistake.
    if (recipe.dist.world_size != o.launch.world_size) {
      if (recipe.dist.world_size != 1)
        throw InputError(recipe.locate("dist.world_size"), "dist.world_size",
                         fmt::format("is {} but {} started {} rank{}", recipe.dist.world_size, o.launch.launcher,
                                     o.launch.world_size, o.launch.world_size == 1 ? "" : "s"));
      overrides.push_back(fmt::format("dist.world_size={}", o.launch.world_size));
      recipe = load_recipe(recipe_path, overrides);
    }
    // Every rank would print the same warnings: rank 0 speaks for the job.
    if (o.launch.rank == 0)
      for (const auto& w : recipe.warnings) err << "train: warning: " << single_line(w) << "\n";
    return run_training(recipe, o, out, err);
  });
}

}  // namespace llmlab
