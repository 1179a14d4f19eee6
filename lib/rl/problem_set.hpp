// The problems an rl-train run draws from (a built-in generated task or task.file), their
// prompts tokenized exactly as pack-data starts a prompt/completion document (so an SFT'd
// policy sees the prompts it was trained on), and the verifier that scores responses.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/source/render.hpp"
#include "data/tokenizer/tokenizer.hpp"
#include "recipe/recipe.hpp"
#include "rl/problem.hpp"
#include "rl/verifier.hpp"

namespace llmlab {

struct ProblemSet {
  std::vector<Problem> problems;
  std::vector<std::vector<std::int32_t>> prompts;  // token ids, per problem
  std::vector<double> difficulty;                  // per problem (the sampler's input)
  std::string source;                              // "running_sum (built-in)" or the file
};

// The recipe's tokenizer (data.tokenizer: "byte" or a tokenizer.json).
std::unique_ptr<Tokenizer> recipe_tokenizer(const Recipe& recipe);

// Throws InputError naming the key (task.*, data.max_prompt_length) or the problem (file:line
// via its id) when the set is empty, a prompt is longer than data.max_prompt_length, a token
// is outside the model's vocabulary, or an answer cannot be verified.
ProblemSet load_problem_set(const Recipe& recipe, const DocumentRenderer& renderer);

// The built-in task settings of a recipe (task.name must not be `file`).
BuiltinTaskSettings builtin_settings(const Recipe& recipe);

}  // namespace llmlab
