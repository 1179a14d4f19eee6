// train's step loop: data, model, optimizer, evaluation, checkpoints, progress and metrics,
// with the measured peak memory reported next to the Plan's prediction.
#pragma once

#include <ostream>
#include <string>

#include "dist/launch.hpp"
#include "recipe/recipe.hpp"

namespace llmlab {

struct TrainOptions {
  bool json = false;       // JSON lines on stdout instead of progress and tables
  bool resume = false;     // continue from the latest checkpoint in output.dir
  std::string init_from;   // safetensors weights (or a checkpoint directory) to start from
  bool quiet = false;      // no progress lines
  LaunchInfo launch;       // this process's rank and world (mpirun, srun, torchrun variables)
};

// Errors (InputError) when the recipe asks train for something it does not implement on
// this backend, naming the key: e.g. MoE, MLA, vision, 16-bit precision on the CPU (train and
// rl-train run the same model code).
void check_trainable(const Recipe& recipe);

// Runs the training described by `recipe`. Returns the process exit code: 0 when done,
// 130 when interrupted (Ctrl-C: a checkpoint was saved first).
int run_training(const Recipe& recipe, const TrainOptions& options, std::ostream& out, std::ostream& err);

}  // namespace llmlab
