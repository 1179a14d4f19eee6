// How fast memory-plan answers: one plan per policy, a whole CLI run in-process, and a
// 1,000-point sweep. Targets (issue 2): one plan under 10 ms, 1,000 points under 1 s.
// Run: scripts/bench-memory-plan.sh
#include <fmt/format.h>

#include <iostream>
#include <sstream>

#include "bench/timing.hpp"
#include "plan/plan.hpp"
#include "recipe/recipe.hpp"
#include "tools/memory_plan_main.hpp"

using namespace llmlab;

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : ".";
  const std::string recipe = root + "/recipes/llama2/7b_pretrain_8gpu.yaml";
  const std::string moe = root + "/recipes/moonlight/16b-a3b_pretrain_32gpu.yaml";
  fmt::print("{:<52} {:>10} {:>10} {:>10} {:>8}\n", "benchmark", "median", "min", "max", "target");
  auto row = [](const std::string& name, const Timing& t, const std::string& target) {
    fmt::print("{:<52} {:>7.3f} ms {:>7.3f} ms {:>7.3f} ms {:>8}\n", name, t.median_s * 1e3, t.min_s * 1e3,
               t.max_s * 1e3, target);
  };

  for (const char* policy : {"none", "full", "sqrt", "budget"}) {
    const Recipe r = load_recipe(recipe, {std::string("checkpointing.policy=") + policy});
    row(fmt::format("make_plan llama2-7b, policy {}", policy), measure([&] { (void)make_plan(r.model, r); }, 3, 50),
        "10 ms");
  }
  {
    const Recipe r = load_recipe(moe, {"checkpointing.policy=budget"});
    row("make_plan moonlight-16b (MoE), policy budget", measure([&] { (void)make_plan(r.model, r); }, 3, 50), "10 ms");
  }
  auto cli = [](std::vector<std::string> args) {
    return [args] {
      std::ostringstream out, err;
      if (memory_plan_main(args, out, err) != 0) throw std::runtime_error(err.str());
    };
  };
  row("memory-plan RECIPE --json (load, plan, JSON)", measure(cli({recipe, "--json"}), 2, 20), "10 ms");
  row("memory-plan --sweep dist.world_size=1..1000 --json", measure(cli({recipe, "--sweep", "dist.world_size=1..1000", "--json"}), 1, 5),
      "1000 ms");
  row("memory-plan --sweep (40 stages x 25 micro-batches)",
      measure(cli({recipe, "--sweep", "zero.stage=0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3,0,1,2,3",
                   "--sweep", "train.micro_batch_size=1..25"}),
              1, 5),
      "1000 ms");
  row("memory-plan --fit 40GiB (144 candidate plans)", measure(cli({recipe, "--fit", "40GiB"}), 1, 5), "-");
  return 0;
}
