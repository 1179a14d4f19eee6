#include "rl/long2short.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "model/generator.hpp"
#include "model/safetensors.hpp"
#include "model/weights.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "rl/generate.hpp"
#include "rl/problem_set.hpp"
#include "rl/scoring.hpp"
#include "train/run_checkpoint.hpp"

namespace llmlab {

namespace fs = std::filesystem;

namespace {

std::string model_file(const std::string& path) {
  return fs::is_directory(path) ? (fs::path(path) / "model.safetensors").string() : path;
}

}  // namespace

std::int64_t merge_weights(const std::string& a_path, const std::string& b_path, double alpha,
                           const std::string& output_dir) {
  if (!(alpha >= 0 && alpha <= 1)) throw InputError(fmt::format("merge: --alpha must be in [0, 1] (got {})", alpha));
  const SafetensorsFile a(model_file(a_path)), b(model_file(b_path));
  if (a.names() != b.names())
    throw InputError(fmt::format("merge: {} and {} hold different tensors (not the same architecture)", a.path(), b.path()));
  std::vector<std::vector<float>> merged;
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : a.names()) {
    const SafetensorsTensor& ta = a.at(name);
    const SafetensorsTensor& tb = b.at(name);
    if (ta.shape != tb.shape)
      throw InputError(fmt::format("merge: tensor {} has different shapes in {} and {}", name, a.path(), b.path()));
    std::vector<float> x(static_cast<std::size_t>(ta.numel)), y(x.size());
    a.read_f32(name, x.data(), ta.numel);
    b.read_f32(name, y.data(), tb.numel);
    for (std::size_t i = 0; i < x.size(); ++i)
      x[i] = static_cast<float>(alpha * static_cast<double>(x[i]) + (1 - alpha) * static_cast<double>(y[i]));
    merged.push_back(std::move(x));
    tensors.push_back({name, "F32", ta.shape, merged.back().data()});
  }
  fs::create_directories(output_dir);
  std::map<std::string, std::string> metadata{{"format", "pt"},
                                              {"llmlab_merge", fmt::format("{} x {} + {} x {}", alpha, a.path(),
                                                                           1 - alpha, b.path())}};
  write_safetensors((fs::path(output_dir) / "model.safetensors").string(), tensors, metadata);
  const fs::path config = fs::path(a.path()).parent_path() / "config.json";
  if (fs::exists(config)) {
    std::ifstream in(config);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    write_file_atomic((fs::path(output_dir) / "config.json").string(), text);
  }
  return static_cast<std::int64_t>(tensors.size());
}

SftSetStats write_shortest_correct(const Recipe& recipe, const std::string& init_from, const std::string& output,
                                   std::int64_t max_problems) {
  const RlSettings& rl = recipe.rl;
  const std::unique_ptr<Tokenizer> tokenizer = recipe_tokenizer(recipe);
  const DocumentRenderer renderer(*tokenizer, recipe.data);
  if (!renderer.eos()) throw InputError(recipe.locate("data.eos_token"), "data.eos_token", "the tokenizer has no end-of-sequence token");
  const ProblemSet set = load_problem_set(recipe, renderer);
  const Verifier verifier(rl.verifier);

  CpuBackend backend(static_cast<int>(recipe.train.threads));
  TrackedMemory mem(backend);
  Weights weights(recipe.model, mem);
  load_weights(init_from, weights, backend);
  const std::int64_t batch = rl.train_batch_size;
  Generator generator(recipe.model, weights, backend, mem, batch * rl.n, rl.max_prompt_length + rl.max_response_length);
  GenerationSettings g;
  g.sampling = rl.sampling;
  g.max_new_tokens = rl.max_response_length;
  g.stop_tokens = {*renderer.eos()};
  g.samples_per_prompt = rl.n;
  g.vocab_limit = tokenizer->vocab_size();

  const std::int64_t total = std::min<std::int64_t>(max_problems > 0 ? max_problems : INT64_MAX,
                                                    static_cast<std::int64_t>(set.problems.size()));
  SftSetStats stats;
  double kept_length = 0, sampled_length = 0;
  std::string jsonl;
  for (std::int64_t first = 0; first < total; first += batch) {
    const std::int64_t count = std::min(batch, total - first);
    std::vector<std::vector<std::int32_t>> prompts(set.prompts.begin() + first, set.prompts.begin() + first + count);
    g.seed = recipe.train.seed + static_cast<std::uint64_t>(first);
    const std::vector<Completion> completions = generate(generator, prompts, g);
    for (std::int64_t p = 0; p < count; ++p) {
      const Problem& problem = set.problems[static_cast<std::size_t>(first + p)];
      const Completion* best = nullptr;
      for (std::int64_t j = 0; j < rl.n; ++j) {
        const Completion& c = completions[static_cast<std::size_t>(p * rl.n + j)];
        sampled_length += static_cast<double>(c.tokens.size());
        if (!verifier(response_text(c.tokens, *tokenizer, g.stop_tokens), problem.answer).correct) continue;
        if (!best || c.tokens.size() < best->tokens.size()) best = &c;
      }
      ++stats.problems;
      if (!best) continue;
      ++stats.kept;
      kept_length += static_cast<double>(best->tokens.size());
      jsonl += nlohmann::json{{"prompt", problem.prompt}, {"completion", response_text(best->tokens, *tokenizer, g.stop_tokens)}}.dump() + "\n";
    }
  }
  if (stats.kept == 0) throw Error(fmt::format("sft-set: no problem of {} got a correct sample: nothing to write", set.source));
  write_file_atomic(output, jsonl);
  stats.kept_length_mean = kept_length / static_cast<double>(stats.kept);
  stats.sampled_length_mean = sampled_length / static_cast<double>(stats.problems * rl.n);
  return stats;
}

}  // namespace llmlab
