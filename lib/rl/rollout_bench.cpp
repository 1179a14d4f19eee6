#include "rl/rollout_bench.hpp"

#include <algorithm>
#include <chrono>

#include "model/generator.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "rl/problem_set.hpp"
#include "rl/rollout.hpp"
#include "train/run_checkpoint.hpp"
#include "train/run_support.hpp"

namespace llmlab {

namespace {

std::vector<Trajectory> fresh(const ProblemSet& set, std::int64_t prompts, std::int64_t n, std::uint64_t seed) {
  std::vector<Trajectory> out;
  for (std::int64_t p = 0; p < prompts; ++p)
    for (Trajectory& t : fresh_samples(p, p, set.prompts[static_cast<std::size_t>(p)], n, seed)) out.push_back(std::move(t));
  return out;
}

}  // namespace

RolloutBenchResult bench_rollout(const Recipe& recipe, const std::string& init_from, int repeats) {
  const RlSettings& rl = recipe.rl;
  const std::unique_ptr<Tokenizer> tokenizer = recipe_tokenizer(recipe);
  const DocumentRenderer renderer(*tokenizer, recipe.data);
  const ProblemSet set = load_problem_set(recipe, renderer);
  CpuBackend backend(static_cast<int>(recipe.train.threads));
  TrackedMemory mem(backend);
  Weights weights(recipe.model, mem);
  weights.initialize(recipe.train.seed);
  if (!init_from.empty()) load_weights(init_from, weights, backend);
  const std::int64_t prompts = std::min<std::int64_t>(rl.train_batch_size, static_cast<std::int64_t>(set.prompts.size()));
  const std::int64_t sequences = prompts * rl.n, capacity = rl.max_prompt_length + rl.max_response_length;
  Generator g(recipe.model, weights, backend, mem, sequences, capacity);
  RolloutSettings s;
  s.sampling = rl.sampling;
  s.max_response_length = rl.max_response_length;
  s.vocab_limit = tokenizer->vocab_size();

  RolloutBenchResult r;
  r.sequences = sequences;
  std::vector<double> cached, recomputed;
  std::int64_t same = 0, compared = 0;
  for (int rep = 0; rep < repeats; ++rep) {
    std::vector<Trajectory> a = fresh(set, prompts, rl.n, recipe.train.seed + static_cast<std::uint64_t>(rep));
    RunClock::time_point t0 = RunClock::now();
    r.new_tokens = extend_rollouts(g, a, s, 0);
    cached.push_back(seconds_since(t0));
    // Without a cache: every token is one segment, so each step prefills the whole prefix.
    std::vector<Trajectory> b = fresh(set, prompts, rl.n, recipe.train.seed + static_cast<std::uint64_t>(rep));
    RolloutSettings one = s;
    one.segment_length = 1;
    t0 = RunClock::now();
    while (std::any_of(b.begin(), b.end(), [](const Trajectory& t) { return !t.finished; })) extend_rollouts(g, b, one, 0);
    recomputed.push_back(seconds_since(t0));
    for (std::size_t i = 0; i < a.size(); ++i, ++compared) same += a[i].response == b[i].response ? 1 : 0;
  }
  r.cached_seconds = median(cached);
  r.recompute_seconds = median(recomputed);
  r.same_sequences = compared ? static_cast<double>(same) / static_cast<double>(compared) : 0.0;
  return r;
}

}  // namespace llmlab
