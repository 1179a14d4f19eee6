// Parameter counts of the presets and of Hugging Face config.json files against the real
// models' published totals, and the Hugging Face tensor names.
#include <doctest/doctest.h>

#include <set>

#include "recipe/recipe.hpp"
#include "spec/model_spec.hpp"
#include "test_support.hpp"

using namespace llmlab;
using llmlab::test::source_path;
using llmlab::test::write_temp;

namespace {

ParameterCounts preset_counts(const std::string& preset) {
  return count_parameters(load_recipe(source_path("recipes/models/" + preset)).model);
}

ParameterCounts hf_counts(const std::string& json, const std::vector<std::string>& overrides = {}) {
  const std::string recipe = write_temp("hf_" + json + ".yaml", "model:\n  hf_config: " + source_path("tests/data/hf/" + json) + "\n");
  return count_parameters(load_recipe(recipe, overrides).model);
}

}  // namespace

TEST_CASE("preset parameter counts equal the real models") {
  // Totals of the released checkpoints (safetensors), counted tensor by tensor.
  CHECK(preset_counts("gpt2-124m.yaml").total == 124'439'808);
  CHECK(preset_counts("llama2-7b.yaml").total == 6'738'415'616);
  CHECK(preset_counts("llama3-8b.yaml").total == 8'030'261'248);
  CHECK(preset_counts("qwen3-8b.yaml").total == 8'190'735'360);
  // Moonlight-16B-A3B's config (DeepSeek-V3 shape) tensor by tensor: 15.96 B total.
  const ParameterCounts moon = preset_counts("moonlight-16b-a3b.yaml");
  CHECK(moon.total == 15'960'110'208);
  // "3B activated": 6 of 64 routed experts per token, embeddings and head included.
  CHECK(moon.activated > 2'800'000'000);
  CHECK(moon.activated < 3'100'000'000);
  const ParameterCounts kimi = preset_counts("kimi-vl-a3b.yaml");
  CHECK(kimi.total == 16'407'656'048);  // Kimi-VL-A3B: 16.4 B
  CHECK(kimi.vision > 400'000'000);     // MoonViT ~ 400 M + projector
  CHECK(kimi.vision < 460'000'000);
  CHECK(kimi.total - kimi.vision == moon.total);
}

TEST_CASE("Hugging Face config.json gives the same models") {
  CHECK(hf_counts("llama2-7b.json").total == 6'738'415'616);
  CHECK(hf_counts("qwen3-8b.json").total == 8'190'735'360);
  CHECK(hf_counts("gpt2.json").total == 124'439'808);
  CHECK(hf_counts("mistral-7b.json").total == 7'241'732'096);
  CHECK(hf_counts("qwen2-0.5b.json").total == 494'032'768);  // q/k/v biases, tied embeddings
  CHECK(hf_counts("moonlight-16b-a3b.json").total == 15'960'110'208);
  // DeepSeek-V3: 671 B in the main model, plus one MTP module (the 14 B the report quotes
  // includes copies of the shared embedding and head, which are counted once here).
  const ParameterCounts ds = hf_counts("deepseek-v3.json");
  CHECK(ds.total - ds.mtp == doctest::Approx(671e9).epsilon(0.001));
  CHECK(ds.mtp > 11e9);
  CHECK(ds.mtp < 12e9);
  const ParameterCounts main_model = hf_counts("deepseek-v3.json", {"model.mtp_depth=0"});
  CHECK(main_model.total == ds.total - ds.mtp);
  CHECK(main_model.activated == doctest::Approx(37.5e9).epsilon(0.02));  // "37B activated"
}

TEST_CASE("tensor names follow Hugging Face") {
  const ModelSpec llama = load_recipe(source_path("recipes/models/llama2-7b.yaml")).model;
  std::set<std::string> names;
  for (const auto& p : parameter_table(llama)) names.insert(p.name);
  CHECK(names.count("model.embed_tokens.weight"));
  CHECK(names.count("model.layers.31.self_attn.q_proj.weight"));
  CHECK(names.count("model.layers.0.mlp.down_proj.weight"));
  CHECK(names.count("model.layers.0.post_attention_layernorm.weight"));
  CHECK(names.count("model.norm.weight"));
  CHECK(names.count("lm_head.weight"));
  CHECK(names.size() == 1 + 32 * 9 + 2);

  const ModelSpec gpt2 = load_recipe(source_path("recipes/models/gpt2-124m.yaml")).model;
  bool found_conv1d = false;
  for (const auto& p : parameter_table(gpt2)) {
    CHECK(p.name != "lm_head.weight");  // tied
    if (p.name == "transformer.h.0.attn.c_attn.weight") {
      found_conv1d = true;
      CHECK(p.shape == std::vector<std::int64_t>{768, 2304});  // Conv1D stores [in, out]
    }
  }
  CHECK(found_conv1d);
}

TEST_CASE("weight decay applies to matrices only") {
  const ModelSpec llama = load_recipe(source_path("recipes/models/tiny-llama.yaml")).model;
  for (const auto& p : parameter_table(llama)) {
    const bool matrix = p.shape.size() == 2 && p.group != ParamGroup::embedding;
    CHECK_MESSAGE(p.decay == matrix, p.name);
  }
}
