// The recipe loader: inheritance, overrides, config.json, validation with file:line:column.
#include <doctest/doctest.h>

#include "recipe/recipe.hpp"
#include "test_support.hpp"

using namespace llmlab;
using llmlab::test::source_path;
using llmlab::test::write_temp;

namespace {

// The message of the InputError `f` throws ("" when it does not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    CHECK(e.code() == ExitCode::bad_input);
    return e.what();
  }
  return "";
}

const std::string kModel = "model:\n  vocab_size: 1000\n  hidden_size: 256\n  num_layers: 2\n  num_heads: 4\n"
                           "  intermediate_size: 512\n";

}  // namespace

TEST_CASE("defaults merge first the files own keys win paths are relative to the file") {
  write_temp("inherit/base/model.yaml", kModel + "train:\n  micro_batch_size: 3\n  gradient_accumulation_steps: 5\n");
  write_temp("inherit/base/more.yaml", "train:\n  micro_batch_size: 7\n");
  const std::string top =
      write_temp("inherit/top.yaml", "defaults: [base/model.yaml, base/more.yaml]\ntrain:\n  gradient_accumulation_steps: 9\n");
  const Recipe r = load_recipe(top);
  CHECK(r.train.micro_batch_size == 7);  // the later default wins over the earlier
  CHECK(r.train.gradient_accumulation_steps == 9);  // the file itself wins over its defaults
  CHECK(r.where("train.gradient_accumulation_steps").line == 3);
  CHECK(r.where("train.micro_batch_size").file.find("more.yaml") != std::string::npos);
  CHECK(r.model.num_kv_heads == 4);  // resolved default
  CHECK(r.model.head_dim == 64);
}

TEST_CASE("overrides are typed and validated like file keys") {
  const std::string path = write_temp("ov.yaml", kModel);
  const Recipe r = load_recipe(path, {"train.micro_batch_size=8", "zero.stage=2", "train.attention=naive",
                                      "hardware.memory=40GiB", "model.dropout=0.1"});
  CHECK(r.train.micro_batch_size == 8);
  CHECK(r.zero.stage == 2);
  CHECK(r.train.attention == AttentionImpl::naive);
  CHECK(r.hardware.memory == 40ull << 30);
  CHECK(r.model.dropout == doctest::Approx(0.1));
  CHECK(error_of([&] { load_recipe(path, {"train.micro_batch_size=-4"}); }) ==
        "command line: train.micro_batch_size: must be >= 1 (got -4)");
  CHECK(error_of([&] { load_recipe(path, {"zero.stage=4"}); }) == "command line: zero.stage: must be <= 3 (got 4)");
  CHECK(error_of([&] { load_recipe(path, {"train.micro_batch_size=2.5"}); }).find("expected an integer") != std::string::npos);
  CHECK(error_of([&] { load_recipe(path, {"train.micro_batch_size"}); }).find("key=value") != std::string::npos);
  CHECK(error_of([&] { load_recipe(path, {"train.micro_batch_size="}); }).find("missing value") != std::string::npos);
}

TEST_CASE("errors name file line column and key") {
  const std::string typo = write_temp("typo.yaml", kModel + "train:\n  micro_bach_size: 4\n");
  CHECK(error_of([&] { load_recipe(typo); }) ==
        typo + ":8:20: train.micro_bach_size: unknown key; did you mean 'train.micro_batch_size'?");
  const std::string type = write_temp("type.yaml", kModel + "zero:\n  stage: three\n");
  CHECK(error_of([&] { load_recipe(type); }) == type + ":8:10: zero.stage: expected an integer, got 'three'");
  const std::string yaml = write_temp("broken.yaml", kModel + "train: [1, 2\n");
  // The unclosed '[' is reported where it opens, not at the end of the file.
  CHECK(error_of([&] { load_recipe(yaml); }).find(yaml + ":7:8: malformed recipe") == 0);
  const std::string section = write_temp("section.yaml", kModel + "rl:\n  tau: 0.1\n");
  CHECK(error_of([&] { load_recipe(section); }).find("unknown section 'rl'") != std::string::npos);
  const std::string heads = write_temp("heads.yaml", kModel + "  num_kv_heads: 3\n");
  CHECK(error_of([&] { load_recipe(heads); }) == heads + ":7:17: model.num_kv_heads: num_kv_heads (3) must divide num_heads (4)");
  CHECK(error_of([&] { load_recipe(heads + ".missing"); }).find("cannot open recipe") != std::string::npos);
  const std::string choice = write_temp("choice.yaml", kModel + "checkpointing:\n  policy: ful\n");
  CHECK(error_of([&] { load_recipe(choice); }).find("did you mean 'full'?") != std::string::npos);
  const std::string nomodel = write_temp("nomodel.yaml", "train:\n  micro_batch_size: 1\n");
  CHECK(error_of([&] { require_model(load_recipe(nomodel)); }).find("no model") != std::string::npos);
}

TEST_CASE("contradictions and warnings") {
  const std::string path = write_temp("contra.yaml", kModel);
  CHECK(error_of([&] { load_recipe(path, {"model.num_heads=3"}); }).find("does not divide hidden_size") != std::string::npos);
  // A head_dim makes a non-dividing head count legitimate (Qwen3-0.6B: 16 x 128 > 1024).
  CHECK(load_recipe(path, {"model.num_heads=3", "model.head_dim=64"}).model.head_dim == 64);
  CHECK(error_of([&] { load_recipe(path, {"train.precision=fp32", "train.grad_dtype=bf16"}); }).find("contradict") !=
        std::string::npos);
  CHECK(error_of([&] { load_recipe(path, {"model.arch=gpt2", "data.packing_length=4096"}); }).find("position table") !=
        std::string::npos);
  CHECK(error_of([&] { load_recipe(path, {"checkpointing.policy=every_k", "checkpointing.every_k=3"}); })
            .find("exceeds the model's 2 layers") != std::string::npos);
  const Recipe single = load_recipe(path, {"zero.stage=3"});
  REQUIRE(single.warnings.size() == 1);
  CHECK(single.warnings[0] == "command line: zero.stage: ZeRO-3 on a single rank shards nothing (dist.world_size = 1)");
}

TEST_CASE("inheritance cycles are detected") {
  write_temp("cycle/a.yaml", "defaults: [b.yaml]\n");
  const std::string b = write_temp("cycle/b.yaml", "defaults: [a.yaml]\n");
  const std::string msg = error_of([&] { load_recipe(b); });
  CHECK(msg.find("inheritance cycle") != std::string::npos);
  CHECK(msg.find("b.yaml -> ") != std::string::npos);
}

TEST_CASE("a Hugging Face config.json fills the model section - recipe keys override it") {
  const std::string hf = source_path("tests/data/hf/qwen3-8b.json");
  const std::string path = write_temp("hf.yaml", "model:\n  hf_config: " + hf + "\n  num_layers: 2\n");
  const Recipe r = load_recipe(path);
  CHECK(r.model.hidden_size == 4096);
  CHECK(r.model.num_kv_heads == 8);
  CHECK(r.model.qk_norm);
  CHECK(r.model.num_layers == 2);
  CHECK(r.where("model.hidden_size").file == hf);
  CHECK(r.where("model.hidden_size").line == 9);
  // Replacing a preset: keys of the preset the config does not mention do not leak through.
  const std::string over = write_temp("hf_over.yaml", "defaults: [" + source_path("recipes/models/qwen3-8b.yaml") +
                                                          "]\nmodel:\n  hf_config: " +
                                                          source_path("tests/data/hf/llama2-7b.json") + "\n");
  CHECK_FALSE(load_recipe(over).model.qk_norm);

  const std::string bad = write_temp("bad_type.json", "{\n  \"model_type\": \"bert\"\n}\n");
  const std::string uses_bad = write_temp("uses_bad.yaml", "model:\n  hf_config: bad_type.json\n");
  CHECK(error_of([&] { load_recipe(uses_bad); }).find(bad + ":2:17: model_type: 'bert' is not supported") == 0);
  const std::string broken = write_temp("broken.json", "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": \n");
  const std::string uses_broken = write_temp("uses_broken.yaml", "model:\n  hf_config: broken.json\n");
  CHECK(error_of([&] { load_recipe(uses_broken); }).find(broken + ":") == 0);
  const std::string wrong = write_temp("wrong.json", "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": \"wide\"\n}\n");
  const std::string uses_wrong = write_temp("uses_wrong.yaml", "model:\n  hf_config: wrong.json\n");
  CHECK(error_of([&] { load_recipe(uses_wrong); }) == wrong + ":3:18: model.hidden_size: expected an integer, got 'wide'");
}

TEST_CASE("the resolved recipe reloads to the same settings") {
  for (const char* recipe : {"recipes/llama2/7b_pretrain_8gpu.yaml", "recipes/kimi-vl/a3b_sft_16gpu.yaml",
                             "recipes/gpt2/124m_pretrain_cpu.yaml"}) {
    const Recipe r = load_recipe(source_path(recipe));
    const std::string printed = resolved_yaml(r);
    const std::string again = resolved_yaml(load_recipe(write_temp("resolved.yaml", printed)));
    CHECK(printed.substr(printed.find('\n')) == again.substr(again.find('\n')));
  }
}

TEST_CASE("every key is documented") {
  const std::string keys = describe_keys();
  for (const char* k : {"train.micro_batch_size", "checkpointing.policy", "zero.stage", "hardware.memory", "model.moe.top_k"})
    CHECK(keys.find(k) != std::string::npos);
}
