// memory-plan called in-process through memory_plan_main: the shipped recipes, the JSON report,
// overrides, --print-config, --fit, --sweep and --list-keys.
#include "memory_plan_cli_support.hpp"

using namespace llmlab::test;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Shipped recipes and the JSON report

TEST_CASE("memory_plan cli: every shipped recipe plans in table and JSON mode") {
  const auto recipes = shipped_recipes();
  REQUIRE(recipes.size() >= 7);
  for (const auto& recipe : recipes) {
    CAPTURE(recipe);
    const Result table = memory_plan({recipe});
    INFO("stderr: " << table.err);
    CHECK(table.code == 0);
    CHECK(contains(table.out, "parameters"));
    CHECK(contains(table.out, "peak, at "));
    CHECK(contains(table.out, "per rank"));

    const Result r = memory_plan({recipe, "--json"});
    REQUIRE(r.code == 0);
    const json j = parse_json(r);
    REQUIRE(j.contains("parameters"));
    CHECK(i64(j["parameters"]) > 0);
    CHECK(i64(j["parameters"]) == i64(j["model"]["parameters"]));
    REQUIRE(j.contains("per_rank"));
    const json& pr = j["per_rank"];
    CHECK(i64(pr["model_states_bytes"]) > 0);
    CHECK(i64(pr["activations_bytes"]) > 0);
    CHECK(i64(pr["peak_bytes"]) > 0);
    CHECK(i64(pr["model_states_bytes"]) ==
          i64(pr["params_bytes"]) + i64(pr["grads_bytes"]) + i64(pr["optimizer_bytes"]));
    CHECK(i64(pr["peak_bytes"]) >= i64(pr["model_states_bytes"]));
    REQUIRE(j["fits"].is_boolean());
    CHECK(j["fits"].get<bool>() == (i64(pr["peak_bytes"]) <= i64(j["memory_limit_bytes"])));
    CHECK(j["recipe"] == recipe);

    // The breakdown is the peak, to the byte.
    REQUIRE(j["breakdown"].is_array());
    REQUIRE(!j["breakdown"].empty());
    std::int64_t sum = 0;
    for (const auto& part : j["breakdown"]) {
      CHECK(i64(part["bytes"]) >= 0);
      sum += i64(part["bytes"]);
    }
    CHECK(sum == i64(pr["peak_bytes"]));

    // One entry per decoder layer, named decoder.0 .. decoder.L-1; text models have nothing else.
    REQUIRE(j["layers"].is_array());
    const std::int64_t num_layers = i64(j["model"]["layers"]);
    std::vector<std::string> decoder_names;
    for (const auto& layer : j["layers"]) {
      const std::string name = layer["name"].get<std::string>();
      if (starts_with(name, "decoder.")) decoder_names.push_back(name);
    }
    REQUIRE(static_cast<std::int64_t>(decoder_names.size()) == num_layers);
    for (std::size_t i = 0; i < decoder_names.size(); ++i) CHECK(decoder_names[i] == "decoder." + std::to_string(i));
    if (i64(j["model"]["vision_parameters"]) == 0)
      CHECK(static_cast<std::int64_t>(j["layers"].size()) == num_layers);

    CHECK(j["compute"]["step_seconds"].get<double>() > 0);
    CHECK(j["compute"]["tokens_per_second"].get<double>() > 0);
  }
}

TEST_CASE("memory_plan cli: parameter counts of the shipped models") {
  CHECK(i64(plan_of({llama2()})["parameters"]) == 6738415616);
  CHECK(i64(plan_of({gpt2()})["parameters"]) == 124439808);
  // The counts the model presets document in their comments.
  CHECK(i64(plan_of({source_path("recipes/llama3/8b_pretrain_64gpu.yaml")})["parameters"]) == 8030261248);
  CHECK(i64(plan_of({source_path("recipes/qwen3/8b_sft_8gpu.yaml")})["parameters"]) == 8190735360);
  CHECK(i64(plan_of({source_path("recipes/moonlight/16b-a3b_pretrain_32gpu.yaml")})["parameters"]) == 15960110208);
  CHECK(i64(plan_of({source_path("recipes/kimi-vl/a3b_sft_16gpu.yaml")})["parameters"]) == 16407656048);
}

TEST_CASE("memory_plan cli: the table shows the parameter count with separators") {
  const Result r = memory_plan({llama2()});
  REQUIRE(r.code == 0);
  CHECK(contains(r.out, "6,738,415,616"));
  CHECK(r.err.empty());
}

TEST_CASE("memory_plan cli: overrides change the plan") {
  SUBCASE("ZeRO-3 shards model states that ZeRO-0 replicates") {
    const json z0 = plan_of({llama2(), "zero.stage=0", "dist.world_size=8"});
    const json z3 = plan_of({llama2(), "zero.stage=3", "dist.world_size=8"});
    CHECK(z0["settings"]["zero_stage"] == 0);
    CHECK(z3["settings"]["zero_stage"] == 3);
    CHECK(i64(z3["per_rank"]["model_states_bytes"]) < i64(z0["per_rank"]["model_states_bytes"]));
    CHECK(z3["parameters"] == z0["parameters"]);
  }
  SUBCASE("no checkpointing keeps more activations than full recompute") {
    const json none = plan_of({llama2(), "checkpointing.policy=none"});
    const json full = plan_of({llama2(), "checkpointing.policy=full"});
    CHECK(none["settings"]["checkpointing"] == "none");
    CHECK(full["settings"]["checkpointing"] == "full");
    CHECK(i64(none["per_rank"]["activations_bytes"]) > i64(full["per_rank"]["activations_bytes"]));
    CHECK(full["compute"]["recompute_flops"].get<double>() > 0);
    CHECK(none["compute"]["recompute_flops"].get<double>() == 0);
  }
  SUBCASE("a larger micro-batch needs more activations") {
    const json mb1 = plan_of({llama2(), "train.micro_batch_size=1"});
    const json mb4 = plan_of({llama2(), "train.micro_batch_size=4"});
    CHECK(mb4["settings"]["micro_batch_size"] == 4);
    CHECK(i64(mb4["per_rank"]["activations_bytes"]) > i64(mb1["per_rank"]["activations_bytes"]));
  }
  SUBCASE("the last override of a key wins") {
    const json j = plan_of({llama2(), "zero.stage=0", "zero.stage=2"});
    CHECK(j["settings"]["zero_stage"] == 2);
  }
}

// ---------------------------------------------------------------------------------------------
// --print-config

TEST_CASE("memory_plan cli: --print-config output loads back to the same recipe") {
  for (const auto& recipe : shipped_recipes()) {
    CAPTURE(recipe);
    const Result first = memory_plan({recipe, "--print-config"});
    REQUIRE(first.code == 0);
    const auto first_lines = lines_of(first.out);
    REQUIRE(first_lines.size() > 10);
    CHECK(first_lines[0] == "# resolved from " + recipe);

    const std::string printed = write_temp("mp_printed_" + fs::path(recipe).stem().string() + ".yaml", first.out);
    const Result second = memory_plan({printed, "--print-config"});
    INFO("stderr: " << second.err);
    REQUIRE(second.code == 0);
    const auto second_lines = lines_of(second.out);
    REQUIRE(!second_lines.empty());
    CHECK(second_lines[0] == "# resolved from " + printed);
    // Identical except the first comment line.
    CHECK(std::vector<std::string>(first_lines.begin() + 1, first_lines.end()) ==
          std::vector<std::string>(second_lines.begin() + 1, second_lines.end()));

    const json original = plan_of({recipe});
    const json reloaded = plan_of({printed});
    CHECK(i64(reloaded["per_rank"]["peak_bytes"]) == i64(original["per_rank"]["peak_bytes"]));
    CHECK(reloaded["parameters"] == original["parameters"]);
    CHECK(reloaded["settings"] == original["settings"]);
    CHECK(reloaded["memory_limit_bytes"] == original["memory_limit_bytes"]);
  }
}

TEST_CASE("memory_plan cli: --print-config reflects overrides") {
  const Result r = memory_plan({llama2(), "zero.stage=3", "train.micro_batch_size=4", "--print-config"});
  REQUIRE(r.code == 0);
  CHECK(contains(r.out, "\nzero:\n  stage: 3\n"));
  CHECK(contains(r.out, "  micro_batch_size: 4\n"));
}

// Regression (bug found at commit 732922b, fixed since): resolved_yaml printed
// `hardware.memory: auto` as `memory: 0` (the Field's show ignored memory_auto). recipe.hpp promises
// "loading it gives the same settings", but loading the printed config of a cuda recipe planned
// against the 80 GiB default instead of querying the device.
TEST_CASE("memory_plan cli: --print-config keeps hardware.memory: auto") {
  const Result cuda = memory_plan({llama2(), "hardware.memory=auto", "--print-config"});
  REQUIRE(cuda.code == 0);
  CHECK(contains(cuda.out, "\n  memory: auto\n"));
  CHECK(!contains(cuda.out, "\n  memory: 0\n"));

  // recipes/hardware/cpu.yaml says `memory: auto`.
  const Result cpu = memory_plan({source_path("recipes/tiny/llama_pretrain_cpu.yaml"), "--print-config"});
  REQUIRE(cpu.code == 0);
  CHECK(contains(cpu.out, "\n  memory: auto\n"));
}

// ---------------------------------------------------------------------------------------------
// --fit

TEST_CASE("memory_plan cli: --fit 80GiB recommends a fitting configuration") {
  const Result table = memory_plan({llama2(), "--fit", "80GiB"});
  CHECK(table.code == 0);
  CHECK(contains(table.out, "recommended: "));
  CHECK(contains(table.out, "fastest fitting configurations"));

  const Result r = memory_plan({llama2(), "--fit", "80GiB", "--json"});
  REQUIRE(r.code == 0);
  const json j = parse_json(r);
  CHECK(j["fits"] == true);
  REQUIRE(j.contains("recommended"));
  REQUIRE(j.contains("command"));
  const json& rec = j["recommended"];
  CHECK(i64(rec["per_rank"]["peak_bytes"]) <= 80 * kGiB);
  CHECK(i64(rec["memory_limit_bytes"]) == 80 * kGiB);
  CHECK(rec["fits"] == true);
  CHECK(i64(j["recipe_plan"]["per_rank"]["peak_bytes"]) == i64(plan_of({llama2()})["per_rank"]["peak_bytes"]));

  // Candidates: fits means peak <= 80 GiB; the recommendation is the fastest that fits.
  REQUIRE(j["candidates"].is_array());
  REQUIRE(!j["candidates"].empty());
  double fastest = 1e300;
  for (const auto& c : j["candidates"]) {
    CHECK(c["fits"].get<bool>() == (i64(c["peak_bytes"]) <= 80 * kGiB));
    if (c["fits"].get<bool>()) fastest = std::min(fastest, c["step_seconds"].get<double>());
  }
  CHECK(rec["compute"]["step_seconds"].get<double>() == doctest::Approx(fastest));

  // The command reproduces the recommended plan.
  const std::string command = j["command"].get<std::string>();
  const std::string prefix = "memory-plan " + llama2();
  REQUIRE(starts_with(command, prefix));
  CHECK(contains(command, "hardware.memory=80GiB"));
  std::vector<std::string> args{llama2()};
  std::istringstream rest(command.substr(prefix.size()));
  for (std::string word; rest >> word;) args.push_back(word);
  const json rerun = plan_of(args);
  CHECK(i64(rerun["per_rank"]["peak_bytes"]) == i64(rec["per_rank"]["peak_bytes"]));
  CHECK(rerun["settings"] == rec["settings"]);
}

TEST_CASE("memory_plan cli: --fit 4GiB finds nothing and exits 1") {
  const Result table = memory_plan({llama2(), "--fit", "4GiB"});
  CHECK(table.code == 1);
  CHECK(contains(table.out, "nothing fits"));

  const Result r = memory_plan({llama2(), "--fit", "4GiB", "--json"});
  CHECK(r.code == 1);
  const json j = parse_json(r);
  CHECK(j["fits"] == false);
  CHECK(!j.contains("recommended"));
  CHECK(!j.contains("command"));
  REQUIRE(!j["candidates"].empty());
  for (const auto& c : j["candidates"]) {
    CHECK(c["fits"] == false);
    CHECK(i64(c["peak_bytes"]) > 4 * kGiB);
  }
}

TEST_CASE("memory_plan cli: --fit holds keys given on the command line fixed") {
  SUBCASE("zero.stage") {
    const Result r = memory_plan({llama2(), "zero.stage=0", "--fit", "40GiB", "--json"});
    const json j = parse_json(r);
    CHECK(r.code == (j["fits"].get<bool>() ? 0 : 1));
    REQUIRE(!j["candidates"].empty());
    for (const auto& c : j["candidates"]) CHECK(c["zero_stage"] == 0);

    const Result table = memory_plan({llama2(), "zero.stage=0", "--fit", "40GiB"});
    CHECK(contains(table.out, "held fixed (given on the command line): zero.stage"));
  }
  SUBCASE("checkpointing.policy and the micro-batch") {
    const Result r =
        memory_plan({llama2(), "checkpointing.policy=full", "train.micro_batch_size=1", "--fit", "80GiB", "--json"});
    REQUIRE(r.code == 0);
    const json j = parse_json(r);
    REQUIRE(!j["candidates"].empty());
    for (const auto& c : j["candidates"]) {
      CHECK(c["checkpointing"] == "full");
      CHECK(c["micro_batch_size"] == 1);
    }
    const std::string command = j["command"].get<std::string>();
    CHECK(contains(command, "checkpointing.policy=full"));
    CHECK(contains(command, "train.micro_batch_size=1"));
  }
  SUBCASE("without a command-line key, the stage varies") {
    const json j = parse_json(memory_plan({llama2(), "--fit", "80GiB", "--json"}));
    bool saw_other_stage = false;
    for (const auto& c : j["candidates"]) saw_other_stage = saw_other_stage || c["zero_stage"] != 1;
    CHECK(saw_other_stage);
  }
}

// ---------------------------------------------------------------------------------------------
// --sweep

TEST_CASE("memory_plan cli: --sweep over ZeRO stages") {
  const Result r = memory_plan({llama2(), "--sweep", "zero.stage=0,1,2,3", "--json"});
  REQUIRE(r.code == 0);
  const json j = parse_json(r);
  CHECK(j["sweep"] == json::array({"zero.stage"}));
  REQUIRE(j["rows"].size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    const json& row = j["rows"][i];
    CHECK(row["values"]["zero.stage"] == std::to_string(i));
    CHECK(row["settings"]["zero_stage"] == static_cast<int>(i));
    if (i > 0)
      CHECK(i64(row["per_rank"]["model_states_bytes"]) <= i64(j["rows"][i - 1]["per_rank"]["model_states_bytes"]));
    // Each point is the plan of the same override given directly.
    const json direct = plan_of({llama2(), "zero.stage=" + std::to_string(i)});
    CHECK(row["per_rank"] == direct["per_rank"]);
  }
  CHECK(i64(j["rows"][3]["per_rank"]["model_states_bytes"]) < i64(j["rows"][0]["per_rank"]["model_states_bytes"]));

  const Result table = memory_plan({llama2(), "--sweep", "zero.stage=0,1,2,3"});
  CHECK(table.code == 0);
  CHECK(contains(table.out, "zero.stage"));
  CHECK(lines_of(table.out).size() == 2 + 4);  // header, rule, four rows
}

TEST_CASE("memory_plan cli: --sweep over two keys is the full grid with the last key fastest") {
  const json j = parse_json(
      memory_plan({llama2(), "--sweep", "zero.stage=0,3", "--sweep", "train.micro_batch_size=1..4", "--json"}));
  CHECK(j["sweep"] == json::array({"zero.stage", "train.micro_batch_size"}));
  REQUIRE(j["rows"].size() == 8);
  for (std::size_t i = 0; i < 8; ++i) {
    CAPTURE(i);
    const json& row = j["rows"][i];
    const int stage = i < 4 ? 0 : 3;
    const int micro = static_cast<int>(i % 4) + 1;
    CHECK(row["settings"]["zero_stage"] == stage);
    CHECK(row["settings"]["micro_batch_size"] == micro);
    CHECK(row["values"]["zero.stage"] == std::to_string(stage));
    CHECK(row["values"]["train.micro_batch_size"] == std::to_string(micro));
  }
}

TEST_CASE("memory_plan cli: --sweep ranges with a step") {
  const json j = parse_json(memory_plan({llama2(), "--sweep", "train.micro_batch_size=1..9:4", "--json"}));
  REQUIRE(j["rows"].size() == 3);
  const int expected[] = {1, 5, 9};
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(j["rows"][i]["values"]["train.micro_batch_size"] == std::to_string(expected[i]));
    CHECK(j["rows"][i]["settings"]["micro_batch_size"] == expected[i]);
  }
  // A step that overshoots stops before b; lists and ranges mix.
  const json mixed = parse_json(memory_plan({llama2(), "--sweep", "train.micro_batch_size=1..6:4,8", "--json"}));
  REQUIRE(mixed["rows"].size() == 3);
  CHECK(mixed["rows"][1]["settings"]["micro_batch_size"] == 5);
  CHECK(mixed["rows"][2]["settings"]["micro_batch_size"] == 8);
}

TEST_CASE("memory_plan cli: bad --sweep options are input errors") {
  const std::vector<std::vector<std::string>> cases{
      {llama2(), "--sweep", "zero.stage=0,1", "--sweep", "train.micro_batch_size=1,2", "--sweep", "dist.world_size=8"},
      {llama2(), "--sweep", "zero.stage=3..1"},
      {llama2(), "--sweep", "zero.stage=1..x"},
      {llama2(), "--sweep", "zero.stage=0..3:0"},
      {llama2(), "--sweep", "zero.stage=0..3:-1"},
      {llama2(), "--sweep", "zero.stage"},
      {llama2(), "--sweep", "zero.stage=0,,1"},
      {llama2(), "--sweep", "zero.stage=0,9"},          // 9 is out of range: bound like an override
      {llama2(), "--sweep", "zero.stgae=0,1"},          // unknown key
      {llama2(), "--sweep", "zero.stage=1", "--fit"},  // --fit and --sweep do not combine
  };
  for (const auto& args : cases) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    CAPTURE(joined);
    check_input_error(memory_plan(args));
  }
  CHECK_ERR_HAS(memory_plan(cases[0]), "one or two");
  CHECK_ERR_HAS(memory_plan(cases[1]), "zero.stage");
  CHECK_ERR_HAS(memory_plan(cases[8]), "did you mean 'zero.stage'");
}

// ---------------------------------------------------------------------------------------------
// --list-keys, --help, no recipe

TEST_CASE("memory_plan cli: --list-keys needs no recipe") {
  const Result r = memory_plan({"--list-keys"});
  CHECK(r.code == 0);
  CHECK(r.err.empty());
  CHECK(contains(r.out, "train.micro_batch_size"));
  CHECK(contains(r.out, "zero.stage"));
  CHECK(contains(r.out, "hardware.memory"));
  CHECK(contains(r.out, "checkpointing.policy"));
}

TEST_CASE("memory_plan cli: --help exits 0") {
  const Result r = memory_plan({"--help"});
  CHECK(r.code == 0);
  CHECK(contains(r.out, "--fit"));
  CHECK(contains(r.out, "--sweep"));
  CHECK(contains(r.out, "--print-config"));
}

TEST_CASE("memory_plan cli: no recipe is an input error") {
  const Result r = memory_plan({});
  check_input_error(r);
  CHECK_ERR_HAS(r, "no recipe");
  check_input_error(memory_plan({"--json"}));
  check_input_error(memory_plan({llama2(), "--no-such-option"}));
}

