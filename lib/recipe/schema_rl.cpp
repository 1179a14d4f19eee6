// rl-train's recipe keys: verl's names where verl has one (data.max_prompt_length,
// data.max_response_length, data.train_batch_size, rollout.n, rollout.temperature, ...), and
// the Kimi k1.5 ones (algorithm.tau, length_penalty.*, sampling.strategy, partial_rollout.*).
#include "recipe/field_builders.hpp"

namespace llmlab {

using namespace fields;

const char* task_source_name(TaskSource t) {
  switch (t) {
    case TaskSource::running_sum: return "running_sum";
    case TaskSource::arithmetic: return "arithmetic";
    case TaskSource::file: return "file";
  }
  return "?";
}

void add_rl_fields(std::vector<Field>& s) {
  const double inf = std::numeric_limits<double>::infinity();
  s.push_back(integer("data.max_prompt_length", AT(rl.max_prompt_length), 1, kMaxInt,
                      "rl-train: prompt tokens at most (a longer prompt is an error naming it)"));
  s.push_back(integer("data.max_response_length", AT(rl.max_response_length), 1, kMaxInt,
                      "rl-train: response tokens at most (the generation cap)"));
  s.push_back(integer("data.train_batch_size", AT(rl.train_batch_size), 1, kMaxInt,
                      "rl-train: prompts per iteration (each sampled rollout.n times)"));

  s.push_back(integer("rollout.n", AT(rl.n), 1, kMaxInt, "samples per prompt (k1.5's k; the baseline is their mean reward)"));
  s.push_back(number("rollout.temperature", AT(rl.sampling.temperature), 0, inf, false, "sampling temperature; 0 = greedy"));
  s.push_back(integer("rollout.top_k", AT(rl.sampling.top_k), 0, kMaxInt, "keep the k most likely tokens; 0 = all"));
  s.push_back(number("rollout.top_p", AT(rl.sampling.top_p), 0, 1, false, "nucleus sampling mass; 1 = all"));
  s.push_back(integer("rollout.repeat_max_period", AT(rl.repetition.max_period), 0, kMaxInt,
                      "stop a response that ends in a block of at most this many tokens repeated; 0 = off"));
  s.push_back(integer("rollout.repeat_min_repeats", AT(rl.repetition.min_repeats), 2, kMaxInt,
                      "back-to-back repeats of the block that count as a loop"));
  s.push_back(integer("rollout.repeat_min_tokens", AT(rl.repetition.min_tokens), 1, kMaxInt,
                      "tokens the repeats must cover at least"));
  s.push_back(number("rollout.repeat_penalty", AT(rl.repeat_penalty), 0, inf, false,
                     "subtracted from the reward of a response stopped as a loop"));

  s.push_back(choice<TaskSource>("task.name", AT(rl.task),
                                 {{"running_sum", TaskSource::running_sum}, {"arithmetic", TaskSource::arithmetic},
                                  {"file", TaskSource::file}},
                                 "prompts: a built-in generated task, or task.file"));
  Field file = path("task.file", AT(rl.task_file), {}, "JSONL prompts: prompt, answer, optional difficulty and id");
  const auto assign_path = file.assign;
  file.assign = [assign_path](Recipe& r, const YAML::Node& v, const SourceLoc& where) {
    if (v.IsScalar() && v.Scalar().empty()) r.rl.task_file.clear();  // none (the printed default)
    else assign_path(r, v, where);
  };
  file.default_text = "none";
  s.push_back(file);
  s.push_back(integer("task.count", AT(rl.builtin.count), 1, kMaxInt, "built-in tasks: problems generated"));
  s.push_back(integer("task.min_difficulty", AT(rl.builtin.min_difficulty), 1, kMaxInt,
                      "built-in tasks: easiest difficulty (running_sum: terms; arithmetic: digits)"));
  s.push_back(integer("task.max_difficulty", AT(rl.builtin.max_difficulty), 1, kMaxInt, "built-in tasks: hardest difficulty"));
  s.push_back(integer("task.seed", AT(rl.builtin.seed), 0, kMaxInt, "built-in tasks: generator seed"));
  s.push_back(choice<SolutionStyle>("task.style", AT(rl.builtin.style),
                                    {{"cot", SolutionStyle::cot}, {"direct", SolutionStyle::direct},
                                     {"mixed", SolutionStyle::mixed}},
                                    "built-in tasks: worked solutions written by `rl-train tasks --sft`"));
  s.push_back(number("task.solution_noise", AT(rl.builtin.solution_noise), 0, 1, false,
                     "built-in tasks: fraction of SFT solutions written with one wrong step"));
  s.push_back(choice<VerifierKind>("task.verifier", AT(rl.verifier.kind),
                                   {{"exact", VerifierKind::exact}, {"numeric", VerifierKind::numeric},
                                    {"regex", VerifierKind::regex}},
                                   "how a response is scored against the answer; built-ins default to numeric"));
  s.back().default_text = "exact (built-ins: numeric)";
  s.push_back(text("task.answer_regex", AT(rl.verifier.answer_regex),
                   "PCRE2 pattern extracting the answer (last match, group 1); built-ins: #(-?\\d+)"));
  s.push_back(number("task.tolerance", AT(rl.verifier.tolerance), 0, inf, false,
                     "numeric: |x - answer| <= tolerance x max(1, |answer|)"));

  s.push_back(choice<PolicyLossKind>("algorithm.loss", AT(rl.loss.kind),
                                     {{"k1.5", PolicyLossKind::k15}, {"pg", PolicyLossKind::pg},
                                      {"grpo", PolicyLossKind::grpo}},
                                     "k1.5: squared surrogate, mean-reward baseline; pg: REINFORCE with that baseline; "
                                     "grpo: std-normalised advantages, clipped ratio"));
  s.push_back(number("algorithm.tau", AT(rl.loss.tau), 0, inf, false,
                     "k1.5: weight of the log-ratio to the iteration's reference policy"));
  s.push_back(number("algorithm.clip_eps", AT(rl.loss.clip_eps), 0, 1, true, "grpo: ratio clip range"));
  s.push_back(integer("algorithm.gradient_steps", AT(rl.gradient_steps), 1, kMaxInt,
                      "optimizer steps per iteration (the rollouts split into that many mini-batches)"));

  s.push_back(boolean("length_penalty.enabled", AT(rl.length_penalty.enabled), "add k1.5's length reward"));
  s.push_back(number("length_penalty.weight", AT(rl.length_penalty.weight), 0, inf, false, "its weight"));
  s.push_back(integer("length_penalty.warmup_iterations", AT(rl.length_penalty.warmup_iterations), 0, kMaxInt,
                      "iterations before it applies"));

  s.push_back(choice<SamplingStrategy>("sampling.strategy", AT(rl.sampler.strategy),
                                       {{"uniform", SamplingStrategy::uniform},
                                        {"curriculum", SamplingStrategy::curriculum},
                                        {"prioritized", SamplingStrategy::prioritized}},
                                       "which problems an iteration draws: curriculum = easy to hard; "
                                       "prioritized = weight 1 - success rate"));
  s.push_back(integer("sampling.curriculum_iterations", AT(rl.sampler.curriculum_iterations), 1, kMaxInt,
                      "curriculum: iterations until every difficulty is admitted"));
  s.push_back(number("sampling.min_weight", AT(rl.sampler.min_weight), 0, 1, false,
                     "prioritized: weight floor of solved problems"));

  s.push_back(boolean("partial_rollout.enabled", AT(rl.partial.enabled),
                      "cap each trajectory's tokens per iteration; unfinished ones continue next iteration"));
  s.push_back(integer("partial_rollout.segment_length", AT(rl.partial.segment_length), 1, kMaxInt,
                      "tokens a trajectory may generate per iteration"));
}

}  // namespace llmlab
