// Built-in RL tasks (lib/rl/builtin_tasks): problems are deterministic in the seed, respect the
// difficulty range, have arithmetically right answers, and every worked or answer-only solution
// scores correct with builtin_verifier(); worked steps follow the documented format.
#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "rl/builtin_tasks.hpp"
#include "rl/verifier.hpp"

using namespace llmlab;

namespace {

BuiltinTaskSettings settings(BuiltinTask task, std::int64_t count, std::int64_t lo, std::int64_t hi,
                             std::uint64_t seed, SolutionStyle style = SolutionStyle::cot) {
  BuiltinTaskSettings s;
  s.task = task;
  s.count = count;
  s.min_difficulty = lo;
  s.max_difficulty = hi;
  s.seed = seed;
  s.style = style;
  return s;
}

std::vector<std::int64_t> terms_of(const std::string& prompt) {
  REQUIRE(!prompt.empty());
  REQUIRE(prompt.back() == '=');
  std::vector<std::int64_t> terms;
  std::string cur;
  for (char c : prompt.substr(0, prompt.size() - 1)) {
    if (c == '+') {
      terms.push_back(std::stoll(cur));
      cur.clear();
    } else {
      REQUIRE((c >= '0' && c <= '9'));
      cur += c;
    }
  }
  terms.push_back(std::stoll(cur));
  return terms;
}

struct Binary {
  std::string a, b;
  char op = 0;
};

Binary binary_of(const std::string& prompt) {
  REQUIRE(prompt.back() == '=');
  const auto op = prompt.find_first_of("+-");
  REQUIRE(op != std::string::npos);
  return {prompt.substr(0, op), prompt.substr(op + 1, prompt.size() - op - 2), prompt[op]};
}

bool same(const std::vector<Problem>& x, const std::vector<Problem>& y) {
  if (x.size() != y.size()) return false;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (x[i].id != y[i].id || x[i].prompt != y[i].prompt || x[i].answer != y[i].answer ||
        x[i].solution != y[i].solution || x[i].difficulty != y[i].difficulty)
      return false;
  return true;
}

std::string error_of(const BuiltinTaskSettings& s) {
  try {
    make_builtin_problems(s);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("builtin tasks: the same seed gives the same problems and another seed others") {
  for (BuiltinTask task : {BuiltinTask::running_sum, BuiltinTask::arithmetic}) {
    const auto a = make_builtin_problems(settings(task, 300, 2, 5, 7, SolutionStyle::mixed));
    const auto b = make_builtin_problems(settings(task, 300, 2, 5, 7, SolutionStyle::mixed));
    const auto c = make_builtin_problems(settings(task, 300, 2, 5, 8, SolutionStyle::mixed));
    CHECK(same(a, b));
    CHECK_FALSE(same(a, c));
    // A longer run starts with the shorter one.
    const auto longer = make_builtin_problems(settings(task, 400, 2, 5, 7, SolutionStyle::mixed));
    CHECK(same(a, std::vector<Problem>(longer.begin(), longer.begin() + 300)));
  }
}

TEST_CASE("builtin tasks: generation is fixed across platforms") {
  // Golden values from splitmix64 draws: a change here changes every experiment's data.
  const auto rs = make_builtin_problems(settings(BuiltinTask::running_sum, 2, 2, 4, 0));
  CHECK(rs[0].id == "running_sum-0");
  CHECK(rs[1].id == "running_sum-1");
  CHECK(rs[0].prompt == "0+9+4=");
  CHECK(rs[0].solution == "0+9=9,9+4=13 #13");
  CHECK(rs[0].difficulty == 3.0);
  CHECK(rs[1].prompt == "0+3+0=");
  const auto ar = make_builtin_problems(settings(BuiltinTask::arithmetic, 1, 3, 3, 42));
  CHECK(ar[0].id == "arithmetic-0");
  CHECK(ar[0].prompt == "713+191=");
  CHECK(ar[0].solution == "3+1=4,1+9=10 c1,7+1+1=9 #904");
}

TEST_CASE("builtin tasks: difficulty stays in range and sets the problem size") {
  std::map<std::int64_t, int> seen;
  for (const Problem& p : make_builtin_problems(settings(BuiltinTask::running_sum, 1000, 2, 6, 1))) {
    const auto d = static_cast<std::int64_t>(p.difficulty);
    CHECK(static_cast<double>(d) == p.difficulty);
    CHECK(d >= 2);
    CHECK(d <= 6);
    CHECK(terms_of(p.prompt).size() == static_cast<std::size_t>(d));
    ++seen[d];
  }
  CHECK(seen.size() == 5);
  for (const auto& [d, n] : seen) CHECK(n > 150);  // 200 expected per level

  seen.clear();
  for (const Problem& p : make_builtin_problems(settings(BuiltinTask::arithmetic, 1000, 1, 4, 2))) {
    const auto d = static_cast<std::size_t>(p.difficulty);
    CHECK(d >= 1);
    CHECK(d <= 4);
    const Binary x = binary_of(p.prompt);
    CHECK(x.a.size() == d);
    CHECK(x.b.size() == d);
    if (d > 1) CHECK(x.a[0] != '0');
    if (d > 1) CHECK(x.b[0] != '0');
    ++seen[static_cast<std::int64_t>(d)];
  }
  CHECK(seen.size() == 4);
  for (const auto& p : make_builtin_problems(settings(BuiltinTask::arithmetic, 50, 18, 18, 3)))
    CHECK(binary_of(p.prompt).a.size() == 18);
}

TEST_CASE("builtin tasks: answers are arithmetically right") {
  for (const Problem& p : make_builtin_problems(settings(BuiltinTask::running_sum, 500, 2, 9, 3))) {
    std::int64_t sum = 0;
    for (std::int64_t t : terms_of(p.prompt)) sum += t;
    CHECK(p.answer == std::to_string(sum));
  }
  int subtractions = 0, additions = 0;
  for (const Problem& p : make_builtin_problems(settings(BuiltinTask::arithmetic, 500, 1, 18, 4))) {
    const Binary x = binary_of(p.prompt);
    const auto a = std::stoll(x.a), b = std::stoll(x.b);
    if (x.op == '+') {
      ++additions;
      CHECK(p.answer == std::to_string(a + b));
    } else {
      ++subtractions;
      CHECK(a >= b);
      CHECK(p.answer == std::to_string(a - b));
    }
  }
  CHECK(additions > 200);
  CHECK(subtractions > 200);
}

TEST_CASE("builtin tasks: every cot and direct solution verifies with the builtin verifier") {
  const Verifier verify_builtin(builtin_verifier());
  for (BuiltinTask task : {BuiltinTask::running_sum, BuiltinTask::arithmetic})
    for (SolutionStyle style : {SolutionStyle::cot, SolutionStyle::direct}) {
      const auto lo = task == BuiltinTask::running_sum ? 2 : 1;
      for (const Problem& p : make_builtin_problems(settings(task, 400, lo, 8, 5, style))) {
        const Verdict v = verify_builtin(p.solution, p.answer);
        CHECK_MESSAGE(v.correct, (p.prompt + " -> " + p.solution));
        CHECK(v.answer == p.answer);
        // A wrong final answer does not pass.
        CHECK_FALSE(verify_builtin(p.solution, std::to_string(std::stoll(p.answer) + 1)).correct);
        if (style == SolutionStyle::direct) CHECK(p.solution == "#" + p.answer);
      }
    }
  const VerifierSettings s = builtin_verifier();
  CHECK(s.kind == VerifierKind::numeric);
  CHECK(s.answer_regex == "#(-?\\d+)");
  CHECK(s.tolerance == 0.0);
}

TEST_CASE("builtin tasks: running sum cot writes each partial sum") {
  for (const Problem& p : make_builtin_problems(settings(BuiltinTask::running_sum, 300, 2, 7, 6))) {
    const auto terms = terms_of(p.prompt);
    std::string expect;
    std::int64_t sum = terms[0];
    for (std::size_t k = 1; k < terms.size(); ++k) {
      if (k > 1) expect += ",";
      expect += std::to_string(sum) + "+" + std::to_string(terms[k]) + "=" + std::to_string(sum + terms[k]);
      sum += terms[k];
    }
    CHECK(p.solution == expect + " #" + std::to_string(sum));
  }
}

TEST_CASE("builtin tasks: arithmetic cot works column by column with carries and borrows") {
  std::map<std::string, std::string> cot;
  for (const Problem& p : make_builtin_problems(settings(BuiltinTask::arithmetic, 200000, 1, 2, 9))) cot[p.prompt] = p.solution;
  CHECK(cot["47+85="] == "7+5=12 c1,4+8+1=13 #132");
  CHECK(cot["52-17="] == "12-7=5 b1,5-1-1=3 #35");
  CHECK(cot["40-38="] == "10-8=2 b1,4-3-1=0 #2");
  CHECK(cot["99+99="] == "9+9=18 c1,9+9+1=19 #198");
  CHECK(cot["21+34="] == "1+4=5,2+3=5 #55");
  CHECK(cot["77-77="] == "7-7=0,7-7=0 #0");
  CHECK(cot["7+5="] == "7+5=12 #12");
  CHECK(cot["9-0="] == "9-0=9 #9");
  // Nearly all of the 8100 + 4095 two-digit and 100 + 55 one-digit prompts (a >= b for subtraction).
  CHECK(cot.size() > 12300);
  CHECK(cot.size() <= 12350);
}

TEST_CASE("builtin tasks: mixed style gives both forms over the same problems") {
  const auto cot = make_builtin_problems(settings(BuiltinTask::running_sum, 1000, 3, 5, 11, SolutionStyle::cot));
  const auto mixed = make_builtin_problems(settings(BuiltinTask::running_sum, 1000, 3, 5, 11, SolutionStyle::mixed));
  REQUIRE(cot.size() == mixed.size());
  int direct = 0, worked = 0;
  for (std::size_t i = 0; i < cot.size(); ++i) {
    CHECK(mixed[i].prompt == cot[i].prompt);
    CHECK(mixed[i].answer == cot[i].answer);
    if (mixed[i].solution == "#" + mixed[i].answer) {
      ++direct;
    } else {
      CHECK(mixed[i].solution == cot[i].solution);
      ++worked;
    }
  }
  CHECK(direct > 430);  // 500 expected of each
  CHECK(worked > 430);
}

TEST_CASE("builtin tasks: bad settings are errors naming the setting") {
  CHECK(error_of(settings(BuiltinTask::running_sum, 0, 2, 4, 0)).find("count") != std::string::npos);
  CHECK(error_of(settings(BuiltinTask::running_sum, 10, 1, 4, 0)) ==
        "min_difficulty: running_sum needs at least 2 terms, got 1");
  CHECK(error_of(settings(BuiltinTask::arithmetic, 10, 0, 4, 0)) ==
        "min_difficulty: arithmetic needs at least 1 digits, got 0");
  CHECK(error_of(settings(BuiltinTask::arithmetic, 10, 1, 19, 0)) ==
        "max_difficulty: arithmetic allows at most 18 digits, got 19");
  CHECK(error_of(settings(BuiltinTask::running_sum, 10, 5, 4, 0)) == "max_difficulty: 4 is below min_difficulty 5");
  CHECK(error_of(settings(BuiltinTask::arithmetic, 10, 1, 1, 0)) == "(no error)");
  CHECK_THROWS_AS(make_builtin_problems(settings(BuiltinTask::running_sum, -1, 2, 4, 0)), InputError);
}

TEST_CASE("builtin tasks: names") {
  CHECK(std::string(builtin_task_name(BuiltinTask::arithmetic)) == "arithmetic");
  CHECK(std::string(builtin_task_name(BuiltinTask::running_sum)) == "running_sum");
  CHECK(std::string(solution_style_name(SolutionStyle::mixed)) == "mixed");
  std::set<std::string> ids;
  for (const Problem& p : make_builtin_problems(settings(BuiltinTask::arithmetic, 100, 1, 3, 0))) ids.insert(p.id);
  CHECK(ids.size() == 100);
  CHECK(ids.count("arithmetic-99") == 1);
}

TEST_CASE("builtin tasks: solution noise writes wrong solutions for the same problems") {
  for (const BuiltinTask task : {BuiltinTask::running_sum, BuiltinTask::arithmetic}) {
    for (const SolutionStyle style : {SolutionStyle::cot, SolutionStyle::direct}) {
      BuiltinTaskSettings s;
      s.task = task;
      s.style = style;
      s.count = 4000;
      s.min_difficulty = task == BuiltinTask::running_sum ? 2 : 1;
      s.max_difficulty = 5;
      s.seed = 11;
      const std::vector<Problem> clean = make_builtin_problems(s);
      s.solution_noise = 0.4;
      const std::vector<Problem> noisy = make_builtin_problems(s);
      const Verifier verify(builtin_verifier());
      std::int64_t wrong = 0;
      for (std::size_t i = 0; i < clean.size(); ++i) {
        REQUIRE(noisy[i].prompt == clean[i].prompt);
        REQUIRE(noisy[i].answer == clean[i].answer);
        CHECK(verify(clean[i].solution, clean[i].answer).correct);
        if (!verify(noisy[i].solution, noisy[i].answer).correct) ++wrong;
        else CHECK(noisy[i].solution == clean[i].solution);
      }
      // 0.4 of 4000 (a miswritten 0 may be clamped back to the right answer now and then).
      CHECK(wrong > 1450);
      CHECK(wrong < 1750);
    }
  }
  BuiltinTaskSettings bad;
  bad.solution_noise = 1.5;
  CHECK_THROWS_AS(make_builtin_problems(bad), InputError);
}
