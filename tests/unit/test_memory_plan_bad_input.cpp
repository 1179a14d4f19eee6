// How memory-plan reports bad input, called in-process: exit 2 and exactly one
// "memory-plan: error: " line naming file:line:column and the key; warnings for oddities.
#include "memory_plan_cli_support.hpp"

using namespace llmlab::test;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, one line, file:line:column and key

TEST_CASE("memory_plan cli: missing recipe file") {
  const std::string missing = source_path("recipes/llama2/no_such_recipe.yaml");
  const Result r = memory_plan({missing});
  check_input_error(r);
  CHECK_ERR_HAS(r, "cannot open recipe");
  CHECK_ERR_HAS(r, missing);
}

TEST_CASE("memory_plan cli: missing file named by defaults is reported where it is named") {
  const std::string path =
      write_temp("mp_missing_default.yaml", "train:\n  micro_batch_size: 1\ndefaults: [nowhere.yaml]\n");
  const Result r = memory_plan({path});
  check_input_error(r);
  CHECK_ERR_HAS(r, path + ":3:12: defaults: ");
  CHECK_ERR_HAS(r, "nowhere.yaml");
}

TEST_CASE("memory_plan cli: malformed YAML (unclosed flow sequence)") {
  const std::string path = llama2_variant("mp_unclosed_mid.yaml",
                                          "train:\n"
                                          "  micro_batch_size: [1, 2\n"  // line 3: '[' never closed
                                          "data:\n"
                                          "  packing_length: 4096\n");
  const Result r = memory_plan({path});
  check_input_error(r);
  CHECK_ERR_HAS(r, path + ":");
  CHECK_ERR_HAS(r, "malformed recipe");
  // The parser may notice on the line of the '[' or on the next one, not further away.
  const int line = reported_line(r.err, path);
  CHECK(line >= 3);
  CHECK(line <= 4);
}

// Regression (bug found at commit 732922b, fixed since): yaml-cpp reports where it gave up,
// not where the unclosed '[' is, and read_yaml_file passed that mark on. With the '[' on the last
// line, the error named a line past the end of the file ("...:4:1:" for a 3-line file).
TEST_CASE("memory_plan cli: an unclosed flow sequence is reported at the line that opens it") {
  const std::string path = llama2_variant("mp_unclosed_end.yaml",
                                          "train:\n"
                                          "  micro_batch_size: [1, 2\n");  // line 3, the last line
  const Result r = memory_plan({path});
  check_input_error(r);
  CHECK(reported_line(r.err, path) == 3);
}

TEST_CASE("memory_plan cli: misspelled key suggests the right one") {
  const std::string path = llama2_variant("mp_typo.yaml", "train:\n  micro_bach_size: 4\n");
  const Result r = memory_plan({path});
  check_input_error(r);
  CHECK_ERR_HAS(r, path + ":3:");
  CHECK_ERR_HAS(r, "train.micro_bach_size");
  CHECK_ERR_HAS(r, "unknown key");
  CHECK_ERR_HAS(r, "did you mean 'train.micro_batch_size'?");

  const Result cli = memory_plan({llama2(), "zero.stag=1"});
  check_input_error(cli);
  CHECK_ERR_HAS(cli, "command line: zero.stag: ");
  CHECK_ERR_HAS(cli, "did you mean 'zero.stage'?");
}

TEST_CASE("memory_plan cli: a string where an integer belongs names the value's line and column") {
  const std::string path = llama2_variant("mp_wrong_type.yaml", "train:\n  micro_batch_size: four\n");
  const Result r = memory_plan({path});
  check_input_error(r);
  CHECK_ERR_HAS(r, path + ":3:21: train.micro_batch_size: ");
  CHECK_ERR_HAS(r, "expected an integer");
  CHECK_ERR_HAS(r, "four");
}

TEST_CASE("memory_plan cli: negative micro-batch on the command line") {
  const Result r = memory_plan({llama2(), "train.micro_batch_size=-1"});
  check_input_error(r);
  CHECK_ERR_HAS(r, "command line: train.micro_batch_size: ");
  CHECK_ERR_HAS(r, ">= 1");
  CHECK_ERR_HAS(r, "-1");
}

TEST_CASE("memory_plan cli: heads that do not divide the hidden size") {
  const Result r = memory_plan({llama2(), "model.num_heads=33"});
  check_input_error(r);
  CHECK_ERR_HAS(r, "command line: model.num_heads: ");
  CHECK_ERR_HAS(r, "33");
  CHECK_ERR_HAS(r, "4096");

  const std::string path = llama2_variant("mp_heads.yaml", "model:\n  num_heads: 33\n");
  const Result file = memory_plan({path});
  check_input_error(file);
  CHECK_ERR_HAS(file, path + ":3:14: model.num_heads: ");
}

TEST_CASE("memory_plan cli: kv heads that do not divide the heads") {
  const Result r = memory_plan({llama2(), "model.num_kv_heads=5"});
  check_input_error(r);
  CHECK_ERR_HAS(r, "command line: model.num_kv_heads: ");
  CHECK_ERR_HAS(r, "must divide");

  const std::string path = llama2_variant("mp_kv_heads.yaml", "model:\n  num_kv_heads: 5\n");
  const Result file = memory_plan({path});
  check_input_error(file);
  CHECK_ERR_HAS(file, path + ":3:17: model.num_kv_heads: ");
}

TEST_CASE("memory_plan cli: unknown enum value with a suggestion") {
  const Result r = memory_plan({llama2(), "checkpointing.policy=ful"});
  check_input_error(r);
  CHECK_ERR_HAS(r, "command line: checkpointing.policy: ");
  CHECK_ERR_HAS(r, "did you mean 'full'?");

  const std::string path = llama2_variant("mp_enum.yaml", "checkpointing:\n  policy: selctive\n");
  const Result file = memory_plan({path});
  check_input_error(file);
  CHECK_ERR_HAS(file, path + ":3:11: checkpointing.policy: ");
  CHECK_ERR_HAS(file, "did you mean 'selective'?");
}

TEST_CASE("memory_plan cli: unknown section") {
  const Result r = memory_plan({llama2(), "trian.micro_batch_size=1"});
  check_input_error(r);
  CHECK_ERR_HAS(r, "command line: trian.micro_batch_size: ");
  CHECK_ERR_HAS(r, "unknown section 'trian'");
  CHECK_ERR_HAS(r, "did you mean 'train'?");

  const std::string path = llama2_variant("mp_section.yaml", "optimiser:\n  lr: 0.1\n");
  const Result file = memory_plan({path});
  check_input_error(file);
  CHECK_ERR_HAS(file, path + ":3:7: optimiser.lr: ");
  CHECK_ERR_HAS(file, "unknown section 'optimiser'");
}

TEST_CASE("memory_plan cli: a defaults cycle between two files") {
  const std::string a = write_temp("mp_cycle_a.yaml", "defaults: [mp_cycle_b.yaml]\ntrain:\n  micro_batch_size: 1\n");
  const std::string b = write_temp("mp_cycle_b.yaml", "defaults: [mp_cycle_a.yaml]\n");
  const Result r = memory_plan({a});
  check_input_error(r);
  CHECK_ERR_HAS(r, b + ":1:12: defaults: ");
  CHECK_ERR_HAS(r, "inheritance cycle");
  CHECK_ERR_HAS(r, "mp_cycle_a.yaml");
}

TEST_CASE("memory_plan cli: a recipe that is a YAML list") {
  const std::string path = write_temp("mp_list.yaml", "- model\n- train\n");
  const Result r = memory_plan({path});
  check_input_error(r);
  CHECK_ERR_HAS(r, path + ":1:1: ");
  CHECK_ERR_HAS(r, "mapping");
}

TEST_CASE("memory_plan cli: malformed overrides") {
  const Result no_eq = memory_plan({llama2(), "zero.stage"});
  check_input_error(no_eq);
  CHECK_ERR_HAS(no_eq, "command line: zero.stage: ");
  CHECK_ERR_HAS(no_eq, "key=value");

  check_input_error(memory_plan({llama2(), "zero.stage="}));
  check_input_error(memory_plan({llama2(), "=3"}));
  check_input_error(memory_plan({llama2(), "zero stage=3"}));
  check_input_error(memory_plan({llama2(), "train.micro_batch_size=[1,2]"}));
  check_input_error(memory_plan({llama2(), "train=3"}));
}

TEST_CASE("memory_plan cli: --fit with something that is not a size") {
  const Result r = memory_plan({llama2(), "--fit", "notasize"});
  check_input_error(r);
  CHECK_ERR_HAS(r, "--fit: ");
  CHECK_ERR_HAS(r, "notasize");
  check_input_error(memory_plan({llama2(), "--fit", "0GiB"}));
}

TEST_CASE("memory_plan cli: Hugging Face config.json with an unsupported model_type") {
  const std::string config = write_temp("mp_hf_bert/config.json",
                                        "{\n"
                                        "  \"model_type\": \"bert\",\n"  // line 2, value at column 17
                                        "  \"hidden_size\": 768\n"
                                        "}\n");
  const std::string path = llama2_variant("mp_hf_bert.yaml", "model:\n  hf_config: mp_hf_bert/config.json\n");
  const Result r = memory_plan({path});
  check_input_error(r);
  CHECK_ERR_HAS(r, config + ":2:17: model_type: ");
  CHECK_ERR_HAS(r, "'bert' is not supported");
  CHECK_ERR_HAS(r, "llama");
}

// The error must name line 3, where the JSON breaks. Every brace is closed, so pointing at the
// document's opening '{' (1:1) as an "unclosed bracket" would send the user to the wrong place.
TEST_CASE("memory_plan cli: malformed Hugging Face config.json") {
  const std::string config = write_temp("mp_hf_broken/config.json",
                                        "{\n"
                                        "  \"model_type\": \"llama\",\n"
                                        "  \"hidden_size\" 4096\n"  // line 3: missing ':'
                                        "}\n");
  const std::string path = llama2_variant("mp_hf_broken.yaml", "model:\n  hf_config: mp_hf_broken/config.json\n");
  const Result r = memory_plan({path});
  check_input_error(r);
  CHECK_ERR_HAS(r, config + ":3:");
  CHECK_ERR_HAS(r, "malformed config.json");

  // The same file named on the command line.
  const Result cli = memory_plan({llama2(), "model.hf_config=" + config});
  check_input_error(cli);
  CHECK_ERR_HAS(cli, config + ":3:");
}

TEST_CASE("memory_plan cli: a supported config.json plans") {
  write_temp("mp_hf_llama/config.json",
             "{\n"
             "  \"model_type\": \"llama\", \"vocab_size\": 32000, \"hidden_size\": 4096,\n"
             "  \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 32,\n"
             "  \"intermediate_size\": 11008, \"max_position_embeddings\": 4096, \"tie_word_embeddings\": false\n"
             "}\n");
  const std::string path = llama2_variant("mp_hf_llama.yaml", "model:\n  hf_config: mp_hf_llama/config.json\n");
  // Llama-2-7B's config.json gives the preset's parameter count.
  CHECK(i64(plan_of({path})["parameters"]) == 6738415616);
}

TEST_CASE("memory_plan cli: ZeRO on a single rank is a warning and not an error") {
  const Result r = memory_plan({llama2(), "zero.stage=3", "dist.world_size=1"});
  INFO("stderr: " << r.err);
  CHECK(r.code == 0);
  CHECK(!r.out.empty());
  const auto lines = lines_of(r.err);
  REQUIRE(lines.size() == 1);
  CHECK(starts_with(lines[0], "memory-plan: warning: "));
  CHECK(contains(lines[0], "zero.stage"));
  CHECK(!contains(r.err, "error"));

  const json j = parse_json(memory_plan({llama2(), "zero.stage=3", "dist.world_size=1", "--json"}));
  REQUIRE(j["warnings"].size() == 1);
  CHECK(contains(j["warnings"][0].get<std::string>(), "zero.stage"));
}

// Regression (bug found at commit 732922b, fixed since): errors quoted keys and values
// verbatim, so a YAML string containing a newline split the error over two lines, breaking "Every
// error is one line on `err`" (memory_plan_main.hpp): "...(got 'ful" / "l'); did you mean 'full'?".
TEST_CASE("memory_plan cli: an error quoting a value with a newline is still one line") {
  const std::string path = llama2_variant("mp_newline.yaml", "checkpointing:\n  policy: \"ful\\nl\"\n");
  check_input_error(memory_plan({path}));
}

// Regression (bug found at commit 732922b, fixed since): the planner's int64 byte counts
// overflowed for a huge micro-batch (4096-token rows x 1e10 rows): exit 0 with a negative
// peak_bytes and fits: true. It must either reject the value (exit 2) or plan it honestly
// (positive bytes, does not fit).
TEST_CASE("memory_plan cli: a huge micro-batch is rejected or does not fit") {
  for (const std::string micro : {"10000000000", "1000000000000000", "9223372036854775807"}) {
    CAPTURE(micro);
    const Result r = memory_plan({llama2(), "train.micro_batch_size=" + micro, "--json"});
    if (r.code == 2) {
      check_input_error(r);
      continue;
    }
    REQUIRE(r.code == 0);
    const json j = parse_json(r);
    CHECK(i64(j["per_rank"]["peak_bytes"]) > 0);
    CHECK(i64(j["per_rank"]["activations_bytes"]) > 0);
    CHECK(j["fits"] == false);
  }
}
