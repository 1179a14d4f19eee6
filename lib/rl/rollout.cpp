#include "rl/rollout.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "core/error.hpp"

namespace llmlab {

std::vector<Trajectory> fresh_samples(std::int64_t problem, std::int64_t group, const std::vector<std::int32_t>& prompt,
                                      std::int64_t n, std::uint64_t seed) {
  std::vector<Trajectory> out(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) {
    Trajectory& t = out[static_cast<std::size_t>(j)];
    t.problem = problem;
    t.group = group;
    t.sample = j;
    t.prompt = prompt;
    t.rng = sequence_seed(seed, static_cast<std::uint64_t>(group), static_cast<std::uint64_t>(j));
  }
  return out;
}

std::int64_t extend_rollouts(Generator& g, std::vector<Trajectory>& trajectories, const RolloutSettings& s,
                             std::int64_t iteration) {
  validate(s.sampling);
  std::vector<std::size_t> todo;  // trajectories to extend, in order
  for (std::size_t i = 0; i < trajectories.size(); ++i) {
    Trajectory& t = trajectories[i];
    if (t.finished) continue;
    if (static_cast<std::int64_t>(t.response.size()) >= s.max_response_length) {
      t.finished = true;
      continue;
    }
    if (t.prompt.empty()) throw Error(fmt::format("rollout: problem {} has an empty prompt", t.problem));
    todo.push_back(i);
  }
  if (todo.empty()) return 0;
  if (static_cast<std::int64_t>(todo.size()) > g.cache().sequences())
    throw Error(fmt::format("rollout: {} trajectories exceed the generator's {} sequences", todo.size(),
                            g.cache().sequences()));

  // Sequence i of the generator holds trajectory todo[i]. One prefill per distinct context:
  // a group's fresh samples share their prompt's.
  std::vector<std::int32_t> prefill_seqs;
  std::vector<std::vector<std::int32_t>> contexts;
  std::vector<std::int32_t> source(todo.size());  // the sequence whose prefill a sequence copies
  std::map<std::int64_t, std::int32_t> fresh_of_group;
  for (std::size_t i = 0; i < todo.size(); ++i) {
    const Trajectory& t = trajectories[todo[i]];
    const auto seq = static_cast<std::int32_t>(i);
    if (t.response.empty()) {
      auto [it, inserted] = fresh_of_group.emplace(t.group, seq);
      source[i] = it->second;
      if (!inserted) continue;
    } else {
      source[i] = seq;
    }
    std::vector<std::int32_t> context = t.prompt;
    context.insert(context.end(), t.response.begin(), t.response.end());
    if (static_cast<std::int64_t>(context.size()) > g.cache().capacity())
      throw Error(fmt::format("rollout: a context of {} tokens exceeds the cache capacity {}", context.size(),
                              g.cache().capacity()));
    prefill_seqs.push_back(seq);
    contexts.push_back(std::move(context));
  }
  const std::int64_t V = g.spec().vocab_size;
  std::vector<float> prefill_logits, logits(todo.size() * static_cast<std::size_t>(V));
  g.prefill(prefill_seqs, contexts, prefill_logits);
  for (std::size_t p = 0; p < prefill_seqs.size(); ++p)
    std::copy_n(prefill_logits.begin() + static_cast<std::ptrdiff_t>(p) * V, V,
                logits.begin() + static_cast<std::ptrdiff_t>(prefill_seqs[p]) * V);
  for (std::size_t i = 0; i < todo.size(); ++i)
    if (source[i] != static_cast<std::int32_t>(i)) {
      g.copy_sequence(source[i], static_cast<std::int32_t>(i));
      std::copy_n(logits.begin() + static_cast<std::ptrdiff_t>(source[i]) * V, V,
                  logits.begin() + static_cast<std::ptrdiff_t>(i) * V);
    }

  std::vector<std::int64_t> budget(todo.size());
  for (std::size_t i = 0; i < todo.size(); ++i) {
    const auto left = s.max_response_length - static_cast<std::int64_t>(trajectories[todo[i]].response.size());
    budget[i] = s.segment_length > 0 ? std::min(left, s.segment_length) : left;
    ++trajectories[todo[i]].segments;
  }
  std::int64_t generated = 0;
  const std::int64_t sampled_vocab = s.vocab_limit > 0 ? std::min(s.vocab_limit, V) : V;
  std::vector<std::int32_t> active(todo.size());
  for (std::size_t i = 0; i < todo.size(); ++i) active[i] = static_cast<std::int32_t>(i);
  while (!active.empty()) {
    std::vector<std::int32_t> still, fed;
    for (std::size_t a = 0; a < active.size(); ++a) {
      const auto seq = static_cast<std::size_t>(active[a]);
      Trajectory& t = trajectories[todo[seq]];
      const std::int32_t token = sample_token(logits.data() + static_cast<std::ptrdiff_t>(a) * V, sampled_vocab, s.sampling, t.rng);
      t.response.push_back(token);
      t.produced_at.push_back(static_cast<std::int32_t>(iteration));
      ++generated;
      --budget[seq];
      t.stopped = std::find(s.stop_tokens.begin(), s.stop_tokens.end(), token) != s.stop_tokens.end();
      t.repeated = !t.stopped && ends_in_repetition(t.response, s.repetition);
      t.finished = t.stopped || t.repeated || static_cast<std::int64_t>(t.response.size()) >= s.max_response_length;
      if (t.finished || budget[seq] == 0) continue;
      still.push_back(active[a]);
      fed.push_back(token);
    }
    active = std::move(still);
    if (!active.empty()) g.decode(active, fed, logits);
  }
  return generated;
}

}  // namespace llmlab
