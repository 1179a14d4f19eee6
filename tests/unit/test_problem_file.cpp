// RL problem files (lib/rl/problem_file): JSONL round trips through write_problems and
// load_problems, numeric answers keep their JSON text, ids default to the line, the SFT form is
// prompt/completion, and every malformed line is an error naming file:line and the key.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "rl/problem_file.hpp"
#include "test_support.hpp"

using namespace llmlab;

namespace {

std::string load_error(const std::string& path) {
  try {
    load_problems(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

// The error for a file holding `content`, with the file's path replaced by "F".
std::string error_for(const std::string& name, const std::string& content) {
  const std::string path = test::write_temp(name, content);
  const std::string msg = load_error(path);
  if (msg.rfind(path, 0) != 0) return msg;
  std::string out(1, 'F');
  out.append(msg, path.size());
  return out;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Problem problem(std::string id, std::string prompt, std::string answer, double difficulty, std::string solution = "") {
  Problem p;
  p.id = std::move(id);
  p.prompt = std::move(prompt);
  p.answer = std::move(answer);
  p.difficulty = difficulty;
  p.solution = std::move(solution);
  return p;
}

}  // namespace

TEST_CASE("problem file: write then load gives the same problems") {
  const std::vector<Problem> problems = {
      problem("a", "3+4=", "7", 2, "3+4=7 #7"),
      problem("b-2", "Say \"hi\"\nthen stop.\t", "  hi ", 2.5),
      problem("c", "caf\xc3\xa9 \xe2\x88\x91 ", "-0.125", 0),
  };
  const std::string path = test::write_temp("problems/round_trip.jsonl", "");
  write_problems(path, problems, false);
  const auto loaded = load_problems(path);
  REQUIRE(loaded.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(loaded[i].id == problems[i].id);
    CHECK(loaded[i].prompt == problems[i].prompt);
    CHECK(loaded[i].answer == problems[i].answer);
    CHECK(loaded[i].difficulty == problems[i].difficulty);
    CHECK(loaded[i].solution.empty());  // solutions are not part of the problem format
  }
  const std::string text = read_all(path);
  CHECK(text.rfind("{\"id\":\"a\",\"prompt\":\"3+4=\",\"answer\":\"7\",\"difficulty\":2.0}\n", 0) == 0);
}

TEST_CASE("problem file: the solution form is prompt and completion records") {
  const std::vector<Problem> problems = {problem("a", "3+4=", "7", 2, "3+4=7 #7"), problem("b", "1+1=", "2", 2, "#2")};
  const std::string path = test::write_temp("problems/sft.jsonl", "");
  write_problems(path, problems, true);
  CHECK(read_all(path) == "{\"prompt\":\"3+4=\",\"completion\":\"3+4=7 #7\"}\n{\"prompt\":\"1+1=\",\"completion\":\"#2\"}\n");

  const std::string bare = test::write_temp("problems/sft_bare.jsonl", "old");
  try {
    write_problems(bare, {problem("x", "p", "1", 0)}, true);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("problem 'x' has no solution") != std::string::npos);
  }
  CHECK(read_all(bare) == "old");  // nothing replaced
}

TEST_CASE("problem file: numeric answers keep their JSON text") {
  const auto loaded = load_problems(test::write_temp("problems/numeric.jsonl",
                                                     "{\"prompt\":\"a\",\"answer\":12}\n"
                                                     "{\"prompt\":\"b\",\"answer\":0.5}\n"
                                                     "{\"prompt\":\"c\",\"answer\":-3}\n"
                                                     "{\"prompt\":\"d\",\"answer\":\"12.50\"}\n"));
  REQUIRE(loaded.size() == 4);
  CHECK(loaded[0].answer == "12");
  CHECK(loaded[1].answer == "0.5");
  CHECK(loaded[2].answer == "-3");
  CHECK(loaded[3].answer == "12.50");
}

TEST_CASE("problem file: ids default to the line and other fields are optional") {
  const auto loaded = load_problems(test::write_temp("problems/ids.jsonl",
                                                     "\n"
                                                     "{\"prompt\":\"a\",\"answer\":\"1\",\"extra\":[1,2]}\n"
                                                     "   \n"
                                                     "{\"prompt\":\"b\",\"answer\":\"2\",\"id\":7,\"difficulty\":3}\r\n"
                                                     "{\"prompt\":\"c\",\"answer\":\"3\",\"difficulty\":-1.5}"));
  REQUIRE(loaded.size() == 3);
  CHECK(loaded[0].id == "line-2");
  CHECK(loaded[0].difficulty == 0.0);
  CHECK(loaded[1].id == "7");
  CHECK(loaded[1].difficulty == 3.0);
  CHECK(loaded[2].id == "line-5");
  CHECK(loaded[2].prompt == "c");
  CHECK(loaded[2].difficulty == -1.5);
}

TEST_CASE("problem file: malformed JSON names the line and the parser message") {
  const std::string msg = error_for("problems/bad_json.jsonl", "{\"prompt\":\"a\",\"answer\":\"1\"}\n{\"prompt\": \"b\", \"answer\": }\n");
  CHECK(msg.rfind("F:2:", 0) == 0);
  CHECK(msg.find("malformed JSON: syntax error while parsing value") != std::string::npos);
}

TEST_CASE("problem file: each bad field is an error naming the line and key") {
  CHECK(error_for("problems/e1.jsonl", "[1,2]\n") == "F:1: expected a JSON object, got array");
  CHECK(error_for("problems/e2.jsonl", "\n{\"answer\":\"1\"}\n") == "F:2: prompt: missing (a string is required)");
  CHECK(error_for("problems/e3.jsonl", "{\"prompt\":5,\"answer\":\"1\"}\n") == "F:1: prompt: expected a string, got number");
  CHECK(error_for("problems/e4.jsonl", "{\"prompt\":\"a\"}\n") == "F:1: answer: missing (a string or number is required)");
  CHECK(error_for("problems/e5.jsonl", "{\"prompt\":\"a\",\"answer\":true}\n") ==
        "F:1: answer: expected a string or number, got boolean");
  CHECK(error_for("problems/e6.jsonl", "{\"prompt\":\"a\",\"answer\":\"1\",\"difficulty\":\"hard\"}\n") ==
        "F:1: difficulty: expected a number, got string");
  CHECK(error_for("problems/e7.jsonl", "{\"prompt\":\"a\",\"answer\":\"1\",\"id\":1.5}\n") ==
        "F:1: id: expected a string or an integer, got number");
  CHECK(error_for("problems/e8.jsonl", "{\"prompt\":\"a\",\"answer\":\"1\",\"id\":\"\"}\n") == "F:1: id: must not be empty");
  CHECK(error_for("problems/e9.jsonl", "{\"prompt\":\"a\",\"answer\":null}\n") ==
        "F:1: answer: expected a string or number, got null");
}

TEST_CASE("problem file: duplicate ids name both lines") {
  CHECK(error_for("problems/dup.jsonl",
                  "{\"prompt\":\"a\",\"answer\":\"1\",\"id\":\"x\"}\n"
                  "{\"prompt\":\"b\",\"answer\":\"2\",\"id\":\"y\"}\n\n"
                  "{\"prompt\":\"c\",\"answer\":\"3\",\"id\":\"x\"}\n") == "F:4: id: duplicate id 'x' (first on line 1)");
  // An explicit id may collide with a default one.
  CHECK(error_for("problems/dup_default.jsonl",
                  "{\"prompt\":\"a\",\"answer\":\"1\"}\n"
                  "{\"prompt\":\"b\",\"answer\":\"2\",\"id\":\"line-1\"}\n") ==
        "F:2: id: duplicate id 'line-1' (first on line 1)");
  CHECK(error_for("problems/dup_int.jsonl",
                  "{\"prompt\":\"a\",\"answer\":\"1\",\"id\":3}\n"
                  "{\"prompt\":\"b\",\"answer\":\"2\",\"id\":\"3\"}\n") == "F:2: id: duplicate id '3' (first on line 1)");
}

TEST_CASE("problem file: an empty or missing file is an error naming the path") {
  CHECK(error_for("problems/empty.jsonl", "") == "F: no problems");
  CHECK(error_for("problems/blank.jsonl", "\n  \n\t\n") == "F: no problems");
  const std::string missing = test::write_temp("problems/placeholder", "") + ".does-not-exist.jsonl";
  const std::string msg = load_error(missing);
  CHECK(msg.rfind(missing + ": cannot open problem file: No such file or directory", 0) == 0);
}
