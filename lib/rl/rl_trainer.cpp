#include "rl/rl_trainer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/table.hpp"
#include "core/units.hpp"
#include "dist/communicator.hpp"
#include "model/checkpoint_store.hpp"
#include "model/generator.hpp"
#include "model/model.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "optim/adamw.hpp"
#include "optim/zero.hpp"
#include "rl/policy_update.hpp"
#include "rl/problem_sampler.hpp"
#include "rl/problem_set.hpp"
#include "rl/rollout.hpp"
#include "rl/rollout_batch.hpp"
#include "rl/scoring.hpp"
#include "tools/recipe_plan.hpp"
#include "train/run_checkpoint.hpp"
#include "train/run_support.hpp"
#include "train/trainer.hpp"

namespace llmlab {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// A prompt drawn for rollout.n samples. Every rank knows every group; only its owner
// (id mod world) holds and generates the samples.
struct Group {
  std::int64_t id = 0, problem = 0, first_iteration = 0;
  std::vector<Trajectory> samples;
};

json trajectory_json(const Trajectory& t) {
  return json{{"problem", t.problem},   {"group", t.group},           {"sample", t.sample},
              {"prompt", t.prompt},     {"response", t.response},     {"produced_at", t.produced_at},
              {"rng", t.rng},           {"finished", t.finished},     {"stopped", t.stopped},
              {"repeated", t.repeated}, {"segments", t.segments}};
}

Trajectory trajectory_from(const json& j) {
  Trajectory t;
  t.problem = j.at("problem");
  t.group = j.at("group");
  t.sample = j.at("sample");
  t.prompt = j.at("prompt").get<std::vector<std::int32_t>>();
  t.response = j.at("response").get<std::vector<std::int32_t>>();
  t.produced_at = j.at("produced_at").get<std::vector<std::int32_t>>();
  t.rng = j.at("rng");
  t.finished = j.at("finished");
  t.stopped = j.at("stopped");
  t.repeated = j.at("repeated");
  t.segments = j.at("segments");
  return t;
}

std::string rl_state_name(int rank, int world) { return fmt::format("rl-state-{:05d}-of-{:05d}.json", rank, world); }

// Sums over ranks of one iteration's rollout and reward figures (indices into one array, so
// one all-reduce carries them).
enum IterationSum : std::size_t {
  kGroups, kSamples, kCorrect, kReward, kLength, kCorrectLength, kCorrectCount,
  kRepeated, kStopped, kLengthReward, kGenerated, kTrainedTokens, kStaleTokens,
  kIterationSums
};

}  // namespace

Recipe resolve_rl_recipe(Recipe r) {
  const std::int64_t needed = r.rl.max_prompt_length + r.rl.max_response_length;
  if (!r.is_set("data.packing_length")) r.data.packing_length = needed;
  else if (r.data.packing_length < needed)
    throw InputError(r.locate("data.packing_length"), "data.packing_length",
                     fmt::format("is {} but a prompt and its response take up to data.max_prompt_length + "
                                 "data.max_response_length = {} tokens",
                                 r.data.packing_length, needed));
  if (r.model.arch == Arch::gpt2 && needed > r.model.max_position_embeddings)
    throw InputError(r.locate("data.max_response_length"), "data.max_response_length",
                     fmt::format("prompt + response = {} tokens exceed gpt2's learned positions ({})", needed,
                                 r.model.max_position_embeddings));
  if (!(r.rl.sampler.min_weight > 0))
    throw InputError(r.locate("sampling.min_weight"), "sampling.min_weight", "must be > 0 (no problem may starve)");
  if (r.rl.task != TaskSource::file && !r.is_set("task.verifier") && !r.is_set("task.answer_regex"))
    r.rl.verifier = builtin_verifier();
  if (r.rl.partial.enabled && r.rl.partial.segment_length >= r.rl.max_response_length)
    r.warnings.push_back(fmt::format("{}: partial_rollout.segment_length: {} is not below data.max_response_length ({}): "
                                     "no rollout is ever cut",
                                     r.locate("partial_rollout.segment_length").str(), r.rl.partial.segment_length,
                                     r.rl.max_response_length));
  return r;
}

namespace {

int rl_ranks(const Recipe& recipe, const RunSettings& run, const Plan& plan, const ProblemSet& set,
             const Tokenizer& tokenizer, std::int32_t eos, CheckpointStore& store,
             const std::optional<std::pair<std::int64_t, std::string>>& latest, Communicator& comm,
             const RlOptions& o, std::ostream& out, std::ostream& err) {
  const RlSettings& rl = recipe.rl;
  const ModelSpec& spec = recipe.model;
  const int W = comm.world_size(), rank = comm.rank();
  const bool lead = rank == 0;
  const int stage = static_cast<int>(run.zero.stage);

  TrainingStack stack(plan, run, comm);
  CpuBackend& backend = stack.backend;
  TrackedMemory& mem = stack.mem;
  Model& model = stack.model;
  Weights& weights = model.weights();
  ZeroEngine& zero = stack.zero;
  AdamW& optimizer = stack.optimizer;
  // The rollout engine reads the same parameters the optimizer updates; its KV cache is
  // tracked apart so the training pass can still be compared with its plan.
  TrackedMemory rollout_mem(backend);
  // Groups are dealt by id; without partial rollouts a rank holds ceil(B / W) of them, with
  // them the buffer may leave any mix in flight, up to all B on one rank.
  const std::int64_t my_groups = rl.partial.enabled ? rl.train_batch_size : (rl.train_batch_size + W - 1) / W;
  Generator generator(spec, weights, backend, rollout_mem, my_groups * rl.n,
                      rl.max_prompt_length + rl.max_response_length);
  const Verifier verifier(rl.verifier);
  ProblemSampler sampler(set.difficulty, rl.sampler, run.train.seed);
  RolloutSettings rollout;
  rollout.sampling = rl.sampling;
  rollout.max_response_length = rl.max_response_length;
  rollout.segment_length = rl.partial.enabled ? rl.partial.segment_length : 0;
  rollout.stop_tokens = {eos};
  rollout.repetition = rl.repetition;
  rollout.vocab_limit = tokenizer.vocab_size();

  RunState state;
  state.recipe_hash = fmt::format("{:016x}", text_hash(resolved_yaml(recipe)));
  std::vector<Group> in_flight;  // the replay buffer: groups with unfinished samples
  std::int64_t next_group = 0, optimizer_steps = 0, first_iteration = 1;
  Progress progress(lead && !o.json && !o.quiet, err);
  if (o.resume) {
    const RunState saved = load_checkpoint_files(latest->second, weights, optimizer, backend);
    state.step = saved.step;
    state.tokens_seen = saved.tokens_seen;
    const fs::path dir(latest->second);
    std::ifstream f(dir / rl_state_name(rank, W));
    if (!f)
      throw InputError(fmt::format("{}: no {} (rl-train resumes with the world size that saved it: was it {}?)",
                                   latest->second, rl_state_name(rank, W), W));
    json s;
    try {
      s = json::parse(f);
      sampler.restore(s.at("sampler"));
      next_group = s.at("next_group");
      optimizer_steps = s.at("optimizer_steps");
      for (const auto& g : s.at("in_flight")) {
        Group group{g.at("id"), g.at("problem"), g.at("first_iteration"), {}};
        for (const auto& t : g.at("samples")) group.samples.push_back(trajectory_from(t));
        in_flight.push_back(std::move(group));
      }
    } catch (const json::exception& e) {
      throw InputError(fmt::format("{}/{}: corrupt rl-train state: {}", latest->second, rl_state_name(rank, W), e.what()));
    }
    first_iteration = state.step + 1;
    progress.message(fmt::format("rl-train: resumed from {} (iteration {})", latest->second, state.step));
  } else {
    weights.initialize(run.train.seed);
    if (!o.init_from.empty()) {
      const auto extra = load_weights(o.init_from, weights, backend);
      progress.message(fmt::format("rl-train: policy from {}{}", o.init_from,
                                   extra.empty() ? "" : fmt::format(" ({} tensors in the file unused)", extra.size())));
    } else {
      if (lead) err << "rl-train: warning: no --init-from: the policy starts from random weights\n";
    }
  }
  if (state.step >= run.train.steps)
    throw InputError(recipe.locate("train.steps"), "train.steps",
                     fmt::format("is {} but the checkpoint already completed iteration {}: raise train.steps to go on",
                                 run.train.steps, state.step));
  progress.message(fmt::format("rl-train: {} problems from {}; {} x {} samples per iteration, loss {}{}{}", set.problems.size(),
                               set.source, rl.train_batch_size, rl.n, policy_loss_name(rl.loss.kind),
                               rl.partial.enabled ? fmt::format(", partial rollouts of {} tokens", rl.partial.segment_length) : "",
                               W > 1 ? fmt::format(", {} ranks, ZeRO stage {}", W, stage) : ""));

  std::ofstream metrics;
  if (lead) {
    fs::create_directories(run.output.dir);
    const std::string metrics_path = (fs::path(run.output.dir) / "metrics.jsonl").string();
    metrics.open(metrics_path, o.resume ? std::ios::app : std::ios::trunc);
    if (!metrics) throw Error(fmt::format("cannot write {}", metrics_path));
  }
  auto save = [&](std::int64_t iteration) {
    return save_run_checkpoint(store, iteration, state, weights, zero, optimizer, backend, spec, comm,
                               [&](const std::string& dir) {
                                 json s{{"iteration", iteration}, {"next_group", next_group},
                                        {"optimizer_steps", optimizer_steps}, {"sampler", sampler.state()}};
                                 json groups = json::array();
                                 for (const Group& g : in_flight) {
                                   json samples = json::array();
                                   for (const Trajectory& t : g.samples) samples.push_back(trajectory_json(t));
                                   groups.push_back({{"id", g.id}, {"problem", g.problem},
                                                     {"first_iteration", g.first_iteration}, {"samples", samples}});
                                 }
                                 s["in_flight"] = groups;
                                 write_file_atomic((fs::path(dir) / rl_state_name(rank, W)).string(), s.dump());
                               });
  };

  const InterruptFlag interrupt;
  const std::int64_t total_optimizer_steps = run.train.steps * rl.gradient_steps;
  std::vector<double> iteration_seconds, rollout_rates, train_rates;
  json last;
  bool interrupted = false;
  const RunClock::time_point run_start = RunClock::now();
  for (std::int64_t iteration = first_iteration; iteration <= run.train.steps; ++iteration) {
    const RunClock::time_point t0 = RunClock::now();
    // 1. New prompt groups: a full batch, or (partial rollouts) what the buffer leaves room for.
    const auto room = rl.train_batch_size - static_cast<std::int64_t>(in_flight.size());
    if (room > 0) {
      for (const std::int64_t problem : sampler.draw(room, iteration - 1)) {
        Group g{next_group++, problem, iteration, {}};
        if (g.id % W == rank)
          g.samples = fresh_samples(problem, g.id, set.prompts[static_cast<std::size_t>(problem)], rl.n, run.train.seed);
        in_flight.push_back(std::move(g));
      }
    }

    // 2. Rollouts of this rank's groups (continuing buffered ones where they stopped).
    std::vector<Trajectory> work;
    for (Group& g : in_flight)
      for (Trajectory& t : g.samples) work.push_back(std::move(t));
    const RunClock::time_point r0 = RunClock::now();
    std::array<double, kIterationSums> sums{};
    sums[kGenerated] = static_cast<double>(extend_rollouts(generator, work, rollout, iteration));
    const double rollout_seconds = seconds_since(r0);
    {
      std::size_t k = 0;
      for (Group& g : in_flight)
        for (Trajectory& t : g.samples) t = std::move(work[k++]);
    }

    // 3. Groups whose samples have all finished, known on every rank, scored by their owner.
    std::vector<double> finished(in_flight.size(), 0.0), correct(in_flight.size(), 0.0);
    std::vector<GroupScore> scores(in_flight.size());
    const bool length_on = rl.length_penalty.enabled && iteration > rl.length_penalty.warmup_iterations;
    const RewardSettings reward{length_on, rl.length_penalty.weight, rl.repeat_penalty, rollout.stop_tokens};
    for (std::size_t i = 0; i < in_flight.size(); ++i) {
      Group& g = in_flight[i];
      if (g.samples.empty()) continue;  // another rank's
      if (!std::all_of(g.samples.begin(), g.samples.end(), [](const Trajectory& t) { return t.finished; })) continue;
      finished[i] = 1;
      std::vector<const Trajectory*> samples;
      for (const Trajectory& t : g.samples) samples.push_back(&t);
      scores[i] = score_group(samples, set.problems[static_cast<std::size_t>(g.problem)], verifier, tokenizer, reward);
      for (std::size_t j = 0; j < samples.size(); ++j) {
        const Trajectory& t = g.samples[j];
        const double len = static_cast<double>(t.response.size());
        correct[i] += scores[i].correct[j] ? 1 : 0;
        sums[kSamples] += 1;
        sums[kCorrect] += scores[i].correct[j] ? 1 : 0;
        sums[kReward] += scores[i].rewards[j];
        sums[kLength] += len;
        sums[kLengthReward] += scores[i].length_rewards[j];
        if (scores[i].correct[j]) sums[kCorrectLength] += len, sums[kCorrectCount] += 1;
        sums[kRepeated] += t.repeated ? 1 : 0;
        sums[kStopped] += t.stopped ? 1 : 0;
        for (std::size_t k = 0; k < t.produced_at.size(); ++k)
          (trains_token(t, k, rl.partial.enabled ? kLastSegment : kAllTokens) ? sums[kTrainedTokens] : sums[kStaleTokens]) += 1;
      }
      sums[kGroups] += 1;
    }
    if (W > 1) {
      comm.all_reduce_sum_f64(finished.data(), static_cast<int>(finished.size()));
      comm.all_reduce_sum_f64(correct.data(), static_cast<int>(correct.size()));
      comm.all_reduce_sum_f64(sums.data(), static_cast<int>(sums.size()));
    }
    std::vector<std::size_t> done;  // indices into in_flight, in group order
    for (std::size_t i = 0; i < in_flight.size(); ++i)
      if (finished[i] > 0) {
        done.push_back(i);
        sampler.record(in_flight[i].problem, static_cast<std::int64_t>(correct[i]), rl.n);
      }

    // 4. Policy optimisation: the finished groups in gradient_steps mini-batches, the
    // reference policy being the one that starts the iteration.
    const RunClock::time_point u0 = RunClock::now();
    PolicyUpdater updater(model, comm, rl.loss, run.train.micro_batch_size, run.data.packing_length,
                          rl.partial.enabled ? kLastSegment : kAllTokens);
    auto train_groups = [&](std::size_t begin, std::size_t end) {
      std::vector<TrainGroup> mine;
      for (std::size_t d = begin; d < end; ++d) {
        const std::size_t i = done[d];
        if (in_flight[i].samples.empty()) continue;
        TrainGroup tg;
        for (const Trajectory& t : in_flight[i].samples) tg.samples.push_back(&t);
        tg.rewards = scores[i].rewards;
        mine.push_back(std::move(tg));
      }
      return mine;
    };
    if (rl.gradient_steps > 1 && !done.empty()) updater.compute_reference(train_groups(0, done.size()));
    double loss = 0, log_ratio = 0, grad_norm = 0, lr = 0, policy_tokens = 0;
    std::int64_t steps_taken = 0;
    const auto steps = static_cast<std::size_t>(rl.gradient_steps);
    for (std::size_t s = 0; s < steps; ++s) {
      const std::size_t begin = done.size() * s / steps, end = done.size() * (s + 1) / steps;
      if (begin == end) continue;  // fewer finished groups than gradient steps
      const PolicyPassStats st = updater.accumulate(train_groups(begin, end), 1.0 / static_cast<double>(end - begin));
      zero.finish_gradients();
      double reduced[3] = {st.loss, st.log_ratio, static_cast<double>(st.tokens)};
      if (W > 1) comm.all_reduce_sum_f64(reduced, 3);
      ++optimizer_steps;
      lr = learning_rate(run.optim, optimizer_steps, total_optimizer_steps);
      const UpdateStats update = stack.update(optimizer_steps, lr, std::isfinite(reduced[0]));
      if (!update.finite) {
        const std::string what = fmt::format("iteration {}: the policy loss or its gradient is not finite", iteration);
        if (run.train.on_nonfinite == NonFinitePolicy::stop)
          throw Error(what + ": stopping (train.on_nonfinite=skip skips such steps; lowering optim.lr often helps)");
        if (lead) err << "rl-train: warning: " << what << ": update skipped\n";
      }
      loss += reduced[0];
      log_ratio += reduced[1];
      policy_tokens += reduced[2];
      grad_norm = update.grad_norm;
      ++steps_taken;
    }
    const double update_seconds = seconds_since(u0);
    std::vector<Group> waiting;  // the replay buffer for the next iteration
    for (std::size_t i = 0; i < in_flight.size(); ++i)
      if (finished[i] == 0) waiting.push_back(std::move(in_flight[i]));
    in_flight = std::move(waiting);
    state.step = iteration;
    state.tokens_seen += static_cast<std::uint64_t>(sums[kTrainedTokens]);

    // 5. Report.
    const double generated = sums[kGenerated];  // over all ranks
    const double dt = seconds_since(t0);
    iteration_seconds.push_back(dt);
    rollout_rates.push_back(rollout_seconds > 0 ? generated / W / rollout_seconds : 0);
    train_rates.push_back(update_seconds > 0 ? policy_tokens / W / update_seconds : 0);
    auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
    json record{{"iteration", iteration},
                {"reward_mean", ratio(sums[kReward], sums[kSamples])},
                {"accuracy", ratio(sums[kCorrect], sums[kSamples])},
                {"response_length_mean", ratio(sums[kLength], sums[kSamples])},
                {"correct_length_mean", ratio(sums[kCorrectLength], sums[kCorrectCount])},
                {"length_reward_mean", ratio(sums[kLengthReward], sums[kSamples])},
                {"length_penalty_on", length_on},
                {"groups_trained", sums[kGroups]},
                {"samples", sums[kSamples]},
                {"repeated_fraction", ratio(sums[kRepeated], sums[kSamples])},
                {"truncated_fraction", ratio(sums[kSamples] - sums[kStopped] - sums[kRepeated], sums[kSamples])},
                {"buffered_groups", static_cast<double>(in_flight.size())},
                {"trained_tokens", sums[kTrainedTokens]},
                {"stale_tokens", sums[kStaleTokens]},
                {"rollout_tokens", generated},
                {"rollout_tokens_per_second", rollout_rates.back()},
                {"train_tokens_per_second", train_rates.back()},
                {"rollout_seconds", rollout_seconds},
                {"update_seconds", update_seconds},
                {"iteration_seconds", dt},
                {"loss", loss},
                {"log_ratio_mean", ratio(log_ratio, policy_tokens)},
                {"grad_norm", grad_norm},
                {"lr", lr},
                {"optimizer_steps", optimizer_steps},
                {"admitted_difficulty", sampler.admitted_difficulty(iteration - 1)}};
    last = record;
    const bool log_now = iteration % run.output.log_every == 0 || iteration == run.train.steps;
    if (log_now && lead) {
      metrics << record.dump() << "\n" << std::flush;
      if (o.json) out << record.dump() << "\n" << std::flush;
    }
    const double eta = median(iteration_seconds) * static_cast<double>(run.train.steps - iteration);
    if (log_now || progress.live())
      progress.line(fmt::format("iter {:>{}}/{} | reward {:.3f} | acc {:.3f} | len {:.1f} | rollout {} tok/s | "
                                "train {} tok/s | ETA {}",
                                iteration, std::to_string(run.train.steps).size(), run.train.steps,
                                record["reward_mean"].get<double>(), record["accuracy"].get<double>(),
                                record["response_length_mean"].get<double>(), format_short_count(rollout_rates.back()),
                                format_short_count(train_rates.back()), eta > 0 ? format_seconds(eta) : std::string("done")));
    if (interrupt.raised_on_any(comm)) {
      const std::string where = save(iteration);
      progress.message(fmt::format("rl-train: interrupted: checkpoint saved to {}; continue with --resume", where));
      interrupted = true;
      break;
    }
    if (run.output.checkpoints &&
        (iteration == run.train.steps || (run.output.save_every > 0 && iteration % run.output.save_every == 0)))
      save(iteration);
  }
  progress.finish();
  if (!lead) return interrupted ? 130 : 0;

  json summary;
  summary["iterations"] = state.step;
  summary["first_iteration"] = first_iteration;
  for (const char* key : {"reward_mean", "accuracy", "response_length_mean", "correct_length_mean"})
    if (last.contains(key)) summary[key] = last[key];
  summary["optimizer_steps"] = optimizer_steps;
  summary["trained_tokens"] = state.tokens_seen;
  summary["rollout_tokens_per_second"] = steady_median(rollout_rates);
  summary["train_tokens_per_second"] = steady_median(train_rates);
  summary["iteration_seconds"] = steady_median(iteration_seconds);
  summary["seconds"] = seconds_since(run_start);
  summary["interrupted"] = interrupted;
  summary["checkpoint"] = store.latest() ? store.latest()->second : "";
  summary["world_size"] = W;
  summary["zero_stage"] = stage;
  summary["loss"] = policy_loss_name(rl.loss.kind);
  summary["memory"] = memory_json(plan, mem);
  summary["memory"]["rollout_peak_bytes"] = rollout_mem.peak_bytes();
  metrics << json{{"summary", summary}}.dump() << "\n" << std::flush;
  if (o.json) {
    out << json{{"summary", summary}}.dump() << "\n";
    return interrupted ? 130 : 0;
  }
  Table t;
  t.column("run", Table::Align::left).column("value", Table::Align::left);
  t.row({"iterations", fmt::format("{} ({} optimizer steps, {} trained tokens)", state.step, optimizer_steps,
                                   format_count(state.tokens_seen))});
  if (!last.empty()) {
    t.row({"last iteration", fmt::format("reward {:.3f}, accuracy {:.3f}, response length {:.1f}",
                                         last["reward_mean"].get<double>(), last["accuracy"].get<double>(),
                                         last["response_length_mean"].get<double>())});
  }
  t.row({"throughput", fmt::format("rollout {} tokens/s, training {} tokens/s, {:.2f} s/iteration (medians)",
                                   format_short_count(steady_median(rollout_rates)),
                                   format_short_count(steady_median(train_rates)), steady_median(iteration_seconds))});
  t.row({"time", format_seconds(seconds_since(run_start))});
  t.row({"checkpoint", run.output.checkpoints ? summary["checkpoint"].get<std::string>() : "none (output.checkpoints: false)"});
  t.row({"rollout memory", format_bytes(static_cast<double>(rollout_mem.peak_bytes()))});
  out << "\n";
  t.print(out);
  out << "\n";
  print_memory(plan, mem, out);
  return interrupted ? 130 : 0;
}

}  // namespace

int run_rl_training(const Recipe& recipe, const RlOptions& o, std::ostream& out, std::ostream& err) {
  check_trainable(recipe);
  if (recipe.zero.stage == 3)
    throw InputError(recipe.locate("zero.stage"), "zero.stage",
                     "rl-train generates from whole parameters: use stage 0, 1 or 2 (stage 3 is not supported yet)");
  RunSettings run = resolved_run_settings(recipe, 0);
  run.dist.world_size = o.launch.world_size;
  const Plan plan = make_plan(recipe.model, run);

  const std::unique_ptr<Tokenizer> tokenizer = recipe_tokenizer(recipe);
  const DocumentRenderer renderer(*tokenizer, recipe.data);
  const auto eos = renderer.eos();
  if (!eos)
    throw InputError(recipe.locate("data.eos_token"), "data.eos_token",
                     "the tokenizer has no usual end-of-sequence token: name the one responses end with");
  if (*eos >= recipe.model.vocab_size)
    throw InputError(recipe.locate("model.vocab_size"), "model.vocab_size",
                     fmt::format("is {} but the end-of-sequence token is id {}", recipe.model.vocab_size, *eos));
  const ProblemSet set = load_problem_set(recipe, renderer);
  if (static_cast<std::int64_t>(set.problems.size()) < recipe.rl.train_batch_size)
    throw InputError(recipe.locate("data.train_batch_size"), "data.train_batch_size",
                     fmt::format("is {} but {} holds only {} problems", recipe.rl.train_batch_size, set.source,
                                 set.problems.size()));

  CheckpointStore store((fs::path(run.output.dir) / "checkpoints").string(), static_cast<int>(run.output.keep_last));
  const auto latest = check_run_store(recipe, store, o.resume, "iteration");

  const std::unique_ptr<Communicator> comm = make_communicator(o.launch, run.dist.timeout_seconds);
  comm->check_same("resolved recipe", text_hash(resolved_yaml(recipe) + (o.resume ? "resume" : "") + o.init_from));
  return on_all_ranks_or_abort(*comm, "rl-train", [&] {
    return rl_ranks(recipe, run, plan, set, *tokenizer, *eos, store, latest, *comm, o, out, err);
  });
}

}  // namespace llmlab
