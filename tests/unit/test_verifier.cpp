// Verifiers (lib/rl/verifier): exact comparison trims whitespace only, numeric reads the last
// number within a relative tolerance, regex takes the last match (group 1 when present), a
// response without an answer scores as unanswered, and bad settings name their key.
#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "rl/verifier.hpp"

using namespace llmlab;

namespace {

VerifierSettings settings(VerifierKind kind, std::string regex = "", double tolerance = 1e-6) {
  VerifierSettings s;
  s.kind = kind;
  s.answer_regex = std::move(regex);
  s.tolerance = tolerance;
  return s;
}

std::string error_of(const VerifierSettings& s) {
  try {
    Verifier v(s);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("verifier exact: surrounding whitespace is trimmed and the rest compared byte for byte") {
  const Verifier v(settings(VerifierKind::exact));
  Verdict r = v("  Paris\n", "Paris");
  CHECK(r.correct);
  CHECK(r.extracted);
  CHECK(r.answer == "Paris");
  CHECK(v("\tParis ", " Paris\r\n").correct);
  CHECK_FALSE(v("paris", "Paris").correct);
  CHECK_FALSE(v("Par is", "Paris").correct);
  CHECK_FALSE(v("Paris.", "Paris").correct);
  CHECK(v("", "  ").correct);
}

TEST_CASE("verifier numeric: the last number in the response is compared") {
  const Verifier v(settings(VerifierKind::numeric));
  Verdict r = v("3 apples and 4 pears make 7", "7");
  CHECK(r.correct);
  CHECK(r.extracted);
  CHECK(r.answer == "7");
  r = v("the answer is 7, not 8", "7");
  CHECK_FALSE(r.correct);
  CHECK(r.answer == "8");
  CHECK(v("x = -2.50", "-2.5").correct);
  CHECK(v("about 1.5e3 metres", "1500").correct);
  CHECK(v("3-5=-2", "-2").correct);
  CHECK(v("1.2.3", "3").answer == "3");
  CHECK(v("0.1e", "0.1").correct);  // a dangling exponent letter is not part of the number
}

TEST_CASE("verifier numeric: tolerance is relative to the answer with a floor of 1") {
  // tolerance 0.5: |x - 100| <= 50, |x - 2| <= 1, |x - 0.25| <= 0.5
  const Verifier v(settings(VerifierKind::numeric, "", 0.5));
  CHECK(v("150", "100").correct);
  CHECK(v("50", "100").correct);
  CHECK_FALSE(v("150.001", "100").correct);
  CHECK_FALSE(v("49.99", "100").correct);
  CHECK(v("3", "2").correct);
  CHECK(v("1", "2").correct);
  CHECK_FALSE(v("3.0001", "2").correct);
  CHECK(v("0.75", "0.25").correct);
  CHECK(v("-0.25", "0.25").correct);
  CHECK_FALSE(v("0.76", "0.25").correct);

  const Verifier tight(settings(VerifierKind::numeric, "", 0.0));
  CHECK(tight("12.0", "12").correct);
  CHECK_FALSE(tight("12.000001", "12").correct);
  // 64-bit integers compare exactly, beyond what doubles resolve (2^53 ~ 9.0e15).
  CHECK_FALSE(tight("123456789012345679", "123456789012345678").correct);
  CHECK(tight("#123456789012345678", "123456789012345678").correct);
  CHECK(tight("-0", "0").correct);
  CHECK(tight("007", "7").correct);
  CHECK(tight("-9223372036854775808", "-9223372036854775808").correct);
  CHECK_FALSE(tight("9223372036854775807", "-9223372036854775808").correct);
  const Verifier standard(settings(VerifierKind::numeric));
  CHECK(standard("1000001", "1000000").correct);  // 1e-6 * 1e6 = 1
  CHECK_FALSE(standard("1000002", "1000000").correct);
  CHECK(standard("1000000.5", "1000000").correct);  // 1e-6 * 1e6 = 1
  CHECK_FALSE(standard("1000001.5", "1000000").correct);
}

TEST_CASE("verifier numeric: no number means not extracted and not correct") {
  const Verifier v(settings(VerifierKind::numeric));
  const Verdict r = v("I do not know", "7");
  CHECK_FALSE(r.extracted);
  CHECK_FALSE(r.correct);
  CHECK(r.answer.empty());
  CHECK_FALSE(v("-", "0").extracted);
  // A reference answer that is not a number never matches (validate_answers rejects it earlier).
  CHECK_FALSE(v("7", "seven").correct);
}

TEST_CASE("verifier numeric: a regex extracts before parsing") {
  const Verifier v(settings(VerifierKind::numeric, "#(-?\\d+)"));
  Verdict r = v("3+4=7,7+5=12 #12", "12");
  CHECK(r.correct);
  CHECK(r.answer == "12");
  r = v("#5 then #12 and 99", "12");  // the last match, not the last number
  CHECK(r.correct);
  CHECK(r.answer == "12");
  r = v("12", "12");
  CHECK_FALSE(r.extracted);
  CHECK_FALSE(r.correct);
  const Verifier words(settings(VerifierKind::numeric, "answer: (\\S+)"));
  r = words("answer: twelve", "12");
  CHECK(r.extracted);
  CHECK_FALSE(r.correct);
  CHECK(r.answer == "twelve");
}

TEST_CASE("verifier regex: the last match wins and group 1 is the answer") {
  const Verifier v(settings(VerifierKind::regex, "\\\\boxed\\{([^}]*)\\}"));
  Verdict r = v("first \\boxed{x+1} then \\boxed{ 2x } done", "2x");
  CHECK(r.correct);
  CHECK(r.extracted);
  CHECK(r.answer == "2x");
  r = v("\\boxed{2x} then \\boxed{3x}", "2x");
  CHECK_FALSE(r.correct);
  CHECK(r.answer == "3x");

  const Verifier whole(settings(VerifierKind::regex, "[A-D]\\)"));  // no group: the whole match
  r = whole("A) is wrong, C) is right", "C)");
  CHECK(r.correct);
  CHECK(r.answer == "C)");
}

TEST_CASE("verifier regex: no match means not extracted and not correct") {
  const Verifier v(settings(VerifierKind::regex, "#(\\w+)"));
  const Verdict r = v("no mark here", "here");
  CHECK_FALSE(r.extracted);
  CHECK_FALSE(r.correct);
  CHECK(r.answer.empty());
}

TEST_CASE("verifier regex: an unset group 1 extracts an empty answer") {
  const Verifier v(settings(VerifierKind::regex, "#(\\d+)|done"));
  Verdict r = v("#4 done", "4");
  CHECK(r.extracted);
  CHECK_FALSE(r.correct);
  CHECK(r.answer.empty());
  r = v("done #4", "4");
  CHECK(r.correct);
}

TEST_CASE("verifier regex: empty matches do not stall the search") {
  const Verifier v(settings(VerifierKind::regex, "x*"));
  const Verdict r = v("axxb", "");
  CHECK(r.extracted);
  CHECK(r.answer.empty());  // the last match is the empty one at the end
}

TEST_CASE("verifier regex: invalid UTF-8 in a response is matched byte-wise") {
  const Verifier v(settings(VerifierKind::regex, "#(\\d+)"));
  CHECK(v(std::string("\xff\xfe #42 \xc3"), "42").correct);
}

TEST_CASE("verifier settings: a bad pattern names the key and the offset") {
  const std::string msg = error_of(settings(VerifierKind::regex, "#(\\d+"));
  CHECK(msg.find("task.answer_regex") != std::string::npos);
  CHECK(msg.find("offset 5") != std::string::npos);
  CHECK(msg.find("missing closing parenthesis") != std::string::npos);
  CHECK(error_of(settings(VerifierKind::numeric, "[a-")).find("task.answer_regex") != std::string::npos);
  CHECK(error_of(settings(VerifierKind::regex, "")).find("task.answer_regex: the regex verifier needs a pattern") !=
        std::string::npos);
  CHECK(error_of(settings(VerifierKind::numeric, "", -1)).find("task.tolerance") != std::string::npos);
  CHECK(error_of(settings(VerifierKind::exact)) == "(no error)");
  CHECK_THROWS_AS(verify(settings(VerifierKind::regex, "("), "x", "x"), InputError);
}

TEST_CASE("verifier free function: matches the class") {
  CHECK(verify(settings(VerifierKind::numeric), "so 41.9999999", "42").correct);
  CHECK_FALSE(verify(settings(VerifierKind::numeric), "so 41.99", "42").correct);
  CHECK(verify(settings(VerifierKind::regex, "=(\\w+)"), "a=b c=d", "d").correct);
}

TEST_CASE("verifier names and number parsing") {
  CHECK(std::string(verifier_name(VerifierKind::exact)) == "exact");
  CHECK(std::string(verifier_name(VerifierKind::numeric)) == "numeric");
  CHECK(std::string(verifier_name(VerifierKind::regex)) == "regex");
  double x = 0;
  CHECK(parse_number(" -12.5e1 ", x));
  CHECK(x == -125.0);
  CHECK_FALSE(parse_number("+1", x));
  CHECK_FALSE(parse_number(".5", x));
  CHECK_FALSE(parse_number("1,234", x));
  CHECK_FALSE(parse_number("12 apples", x));
  CHECK_FALSE(parse_number("1e999", x));
  CHECK_FALSE(parse_number("", x));
}

TEST_CASE("verifier validate answers: numeric needs numeric references") {
  std::vector<Problem> problems;
  problems.push_back(Problem{std::string("a"), std::string("12+0="), std::string(" 12 "), 0, std::string()});
  problems.push_back(Problem{std::string("b"), std::string("12+0="), std::string("twelve"), 0, std::string()});
  CHECK_NOTHROW(validate_answers(settings(VerifierKind::exact), problems, "set.jsonl"));
  try {
    validate_answers(settings(VerifierKind::numeric), problems, "set.jsonl");
    FAIL("expected an error");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()) ==
          "set.jsonl: answer: problem 'b': reference answer 'twelve' is not a number, which the numeric verifier needs");
  }
  problems.pop_back();
  CHECK_NOTHROW(validate_answers(settings(VerifierKind::numeric), problems, "set.jsonl"));
}

TEST_CASE("verifier threads: one verifier scores from several threads") {
  const Verifier v(settings(VerifierKind::numeric, "#(-?\\d+)"));
  std::vector<int> correct(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        const std::string answer = std::to_string(i * (t + 1));
        correct[t] += v("steps #" + std::to_string(i) + " #" + answer, answer).correct ? 1 : 0;
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) CHECK(correct[t] == 500);
}
