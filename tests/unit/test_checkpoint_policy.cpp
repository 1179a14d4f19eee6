// Checkpointing policies: what each keeps, what it costs, and the budget policy's promise.
#include <doctest/doctest.h>

#include <cmath>

#include "plan/fit.hpp"
#include "plan/plan.hpp"
#include "recipe/recipe.hpp"
#include "test_support.hpp"

using namespace llmlab;
using llmlab::test::source_path;

namespace {

Recipe llama(const std::vector<std::string>& overrides = {}) {
  std::vector<std::string> all{"data.packing_length=4096", "train.micro_batch_size=2", "dist.world_size=8",
                               "zero.stage=1"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return load_recipe(source_path("recipes/models/llama2-7b.yaml"), all);
}

Plan plan_with(const std::vector<std::string>& overrides) {
  Recipe r = llama(overrides);
  return make_plan(r.model, r);
}

std::int64_t step_bytes(const Plan& p) {
  return p.bytes(Category::activations) + p.bytes(Category::loss) + p.bytes(Category::temporaries);
}

}  // namespace

TEST_CASE("more recomputation less memory more FLOPs") {
  const Plan none = plan_with({"checkpointing.policy=none"});
  const Plan selective = plan_with({"checkpointing.policy=selective", "checkpointing.selective=pointwise"});
  const Plan full = plan_with({"checkpointing.policy=full"});
  CHECK(none.peak_bytes > selective.peak_bytes);
  CHECK(selective.peak_bytes > full.peak_bytes);
  CHECK(none.compute.recompute_flops == 0);
  CHECK(selective.compute.recompute_flops > 0);
  CHECK(selective.compute.recompute_flops < full.compute.recompute_flops);
  // With flash attention there is no attention core to drop: selective=core keeps everything.
  const Plan core = plan_with({"checkpointing.policy=selective", "checkpointing.selective=core"});
  CHECK(core.peak_bytes == none.peak_bytes);
  // Without recompute the peak is where backward starts; every layer's activations are live.
  CHECK(none.peak_phase.find("backward") == 0);
}

TEST_CASE("full keeps one input per layer and rebuilds the rest") {
  const Plan full = plan_with({"checkpointing.policy=full"});
  const std::int64_t input = 2 * 4096 * 4096 * 2;  // [b*s, h] in bf16
  for (const auto& l : full.layers) {
    CHECK(l.mode == LayerMode::recompute);
    CHECK(l.kept_bytes == input);
    CHECK(l.rebuilt_bytes == full.profiles[l.profile].total_bytes() - input);
  }
}

TEST_CASE("every_k keeps ceil(L/k) checkpoints and rebuilds k layers at once") {
  for (std::int64_t k : {1, 2, 3, 5, 32}) {
    const Plan p = plan_with({"checkpointing.policy=every_k", "checkpointing.every_k=" + std::to_string(k)});
    const std::int64_t input = 2 * 4096 * 4096 * 2;
    std::int64_t kept = 0;
    for (const auto& l : p.layers) kept += l.kept_bytes;
    const auto segments = (32 + k - 1) / k;
    CHECK(kept == segments * input);
    CHECK(p.segment_length == k);
  }
  // Longer segments: fewer checkpoints, but a larger rebuilt segment; with a layer's
  // activations ~15x its input, k = 1 is the smallest peak for Llama.
  const Plan k1 = plan_with({"checkpointing.policy=every_k", "checkpointing.every_k=1"});
  const Plan k4 = plan_with({"checkpointing.policy=every_k", "checkpointing.every_k=4"});
  CHECK(k1.peak_bytes < k4.peak_bytes);
}

TEST_CASE("sqrt picks Chens k = sqrt(L*C/A)") {
  // GPT-2 small at micro-batch 1: many layers, checkpoints small against the layer.
  for (const char* preset : {"recipes/models/llama2-7b.yaml", "recipes/models/gpt2-124m.yaml"}) {
    Recipe r = load_recipe(source_path(preset), {"checkpointing.policy=sqrt", "data.packing_length=1024"});
    const Plan p = make_plan(r.model, r);
    const BlockProfile& prof = p.profiles[p.layers[0].profile];
    const double L = static_cast<double>(p.layers.size());
    const double k_star = std::sqrt(L * static_cast<double>(prof.bytes_of(SlotClass::input)) /
                                    static_cast<double>(prof.total_bytes()));
    CHECK(p.segment_length >= std::max(1.0, std::floor(k_star)));
    CHECK(p.segment_length <= std::max(1.0, std::ceil(k_star)));
  }
}

TEST_CASE("budget stays within its budget and spends less recompute as the budget grows") {
  const Plan none = plan_with({"checkpointing.policy=none"});
  const Plan full = plan_with({"checkpointing.policy=full"});
  double previous_flops = INFINITY;
  const std::int64_t lo = step_bytes(full), hi = step_bytes(none);
  for (int i = 0; i <= 10; ++i) {
    const std::int64_t budget = lo + (hi - lo) * i / 10;
    const Plan b = plan_with({"checkpointing.policy=budget", "checkpointing.budget=" + std::to_string(budget)});
    CAPTURE(budget);
    CHECK(step_bytes(b) <= budget);
    CHECK(b.compute.recompute_flops <= previous_flops);
    previous_flops = b.compute.recompute_flops;
  }
  // Enough for everything: nothing is recomputed, exactly like `none`.
  const Plan roomy = plan_with({"checkpointing.policy=budget", "checkpointing.budget=" + std::to_string(hi)});
  CHECK(roomy.compute.recompute_flops == 0);
  CHECK(roomy.peak_bytes == none.peak_bytes);
  // Halfway, it mixes: some layers whole, some recomputed or selectively dropped.
  const Plan half = plan_with({"checkpointing.policy=budget", "checkpointing.budget=" + std::to_string((lo + hi) / 2)});
  CHECK(half.compute.recompute_flops > 0);
  CHECK(half.compute.recompute_flops < full.compute.recompute_flops);
}

TEST_CASE("budget 0 fills what the device leaves") {
  const Plan b = plan_with({"checkpointing.policy=budget", "hardware.memory=48GiB"});
  CHECK(b.fits);
  CHECK(b.peak_bytes <= 48ll << 30);
  const Plan none = plan_with({"checkpointing.policy=none", "hardware.memory=48GiB"});
  CHECK_FALSE(none.fits);
  CHECK(b.compute.recompute_flops < plan_with({"checkpointing.policy=full"}).compute.recompute_flops);
}

TEST_CASE("fit finds the fastest fitting configuration and respects fixed keys") {
  const Recipe r = llama({"hardware.memory=40GiB"});
  const FitResult all = fit_search(r.model, r, {});
  REQUIRE(all.best.has_value());
  const FitCandidate& best = all.tried[*all.best];
  CHECK(best.fits);
  CHECK(best.peak_bytes <= 40ll << 30);
  CHECK(best.run.train.micro_batch_size * best.run.train.gradient_accumulation_steps == 2);
  for (const auto& c : all.tried)
    if (c.fits) CHECK(c.step_seconds >= best.step_seconds * 0.995);

  const FitResult fixed = fit_search(r.model, r, {false, true, true});
  for (const auto& c : fixed.tried) CHECK(c.run.zero.stage == 1);

  const Recipe tiny = llama({"hardware.memory=4GiB"});
  const FitResult none = fit_search(tiny.model, tiny, {});
  CHECK_FALSE(none.best.has_value());
  CHECK(none.reason.find("nothing fits") == 0);
}
