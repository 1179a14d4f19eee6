// RL problem sets on disk: JSONL prompts with reference answers in, and problems (or their
// worked solutions, as prompt/completion SFT records for pack-data) out.
#pragma once

#include <string>
#include <vector>

#include "rl/problem.hpp"

namespace llmlab {

// Loads prompts from JSONL: one object per line with "prompt" (string, required), "answer"
// (string or number, required; numbers are kept as their JSON text, e.g. 12 -> "12",
// 0.5 -> "0.5"), "difficulty" (number, optional), "id" (non-empty string or integer, optional;
// default "line-<n>"). Blank lines are skipped, unknown fields ignored. Errors are InputError
// naming file:line and the key: malformed JSON (with the parser's message), not an object,
// missing or wrongly typed fields, duplicate ids; an empty file ("no problems") and a file that
// cannot be read name the path.
std::vector<Problem> load_problems(const std::string& path);

// Writes problems as JSONL atomically. with_solution=false: {"id","prompt","answer","difficulty"}
// per line, which load_problems reads back. with_solution=true: the SFT records pack-data reads,
// {"prompt": p.prompt, "completion": p.solution} per line (pack-data appends EOS and trains only
// on the completion); a problem without a solution is an Error.
void write_problems(const std::string& path, const std::vector<Problem>& problems, bool with_solution);

}  // namespace llmlab
