#include "rl/problem_set.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "rl/builtin_tasks.hpp"
#include "rl/problem_file.hpp"

namespace llmlab {

std::unique_ptr<Tokenizer> recipe_tokenizer(const Recipe& r) {
  return r.data.tokenizer == "byte" ? make_byte_tokenizer() : load_hf_tokenizer(r.data.tokenizer);
}

BuiltinTaskSettings builtin_settings(const Recipe& r) {
  BuiltinTaskSettings s = r.rl.builtin;
  s.task = r.rl.task == TaskSource::arithmetic ? BuiltinTask::arithmetic : BuiltinTask::running_sum;
  if (r.rl.task == TaskSource::file) throw InputError(r.locate("task.name"), "task.name", "is file, not a built-in task");
  return s;
}

ProblemSet load_problem_set(const Recipe& r, const DocumentRenderer& renderer) {
  ProblemSet set;
  if (r.rl.task == TaskSource::file) {
    if (r.rl.task_file.empty())
      throw InputError(r.locate("task.name"), "task.file", "task.name is file but no task.file is given");
    set.problems = load_problems(r.rl.task_file);
    set.source = r.rl.task_file;
  } else {
    const BuiltinTaskSettings b = builtin_settings(r);
    try {
      set.problems = make_builtin_problems(b);
    } catch (const Error& e) {
      throw InputError(r.locate("task.min_difficulty"), "task", e.what());
    }
    set.source = fmt::format("{} (built-in, difficulty {}-{})", builtin_task_name(b.task), b.min_difficulty,
                             b.max_difficulty);
  }
  validate_answers(r.rl.verifier, set.problems, set.source);
  for (const Problem& p : set.problems) {
    std::vector<std::int32_t> ids = renderer.prompt_tokens(p.prompt);
    if (ids.empty()) throw InputError(SourceLoc{set.source, 0, 0}, "prompt", fmt::format("problem {} has an empty prompt", p.id));
    if (static_cast<std::int64_t>(ids.size()) > r.rl.max_prompt_length)
      throw InputError(r.locate("data.max_prompt_length"), "data.max_prompt_length",
                       fmt::format("is {} but problem {} of {} has a prompt of {} tokens", r.rl.max_prompt_length, p.id,
                                   set.source, ids.size()));
    for (const std::int32_t id : ids)
      if (id >= r.model.vocab_size)
        throw InputError(r.locate("model.vocab_size"), "model.vocab_size",
                         fmt::format("is {} but the tokenizer gives id {} (problem {})", r.model.vocab_size, id, p.id));
    set.prompts.push_back(std::move(ids));
    set.difficulty.push_back(p.difficulty);
  }
  return set;
}

}  // namespace llmlab
