// rl-train's passes through the model: trajectories packed into micro-batches (loss on the
// current iteration's response tokens only), partial rollouts resumed across iterations equal
// to an uninterrupted rollout, the policy loss's parameter gradient against finite
// differences, and the k1.5 step at theta = theta_i equal to policy gradient.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "dist/communicator.hpp"
#include "model/generator.hpp"
#include "model_support.hpp"
#include "rl/policy_update.hpp"
#include "rl/rollout.hpp"
#include "rl/rollout_batch.hpp"

using namespace llmlab;
using namespace llmlab::test;

namespace {

// Two groups of three samples with responses of different lengths; the second group's
// responses were partly produced in iteration 1, the rest in iteration 2.
std::vector<Trajectory> sample_trajectories() {
  const auto docs = random_docs({4, 6, 3, 5, 1, 7, 2, 3, 6}, 64, 91);
  std::vector<Trajectory> out;
  for (int g = 0; g < 2; ++g)
    for (int j = 0; j < 3; ++j) {
      Trajectory t;
      t.group = g;
      t.sample = j;
      t.prompt = docs[static_cast<std::size_t>(g)];
      t.response = docs[static_cast<std::size_t>(2 + 3 * g + j)];
      if (g == 1) t.response.push_back(5);
      for (std::size_t k = 0; k < t.response.size(); ++k) t.produced_at.push_back(g == 1 && k < 2 ? 1 : 2);
      t.finished = true;
      out.push_back(t);
    }
  return out;
}

std::vector<const Trajectory*> pointers(const std::vector<Trajectory>& ts) {
  std::vector<const Trajectory*> out;
  for (const auto& t : ts) out.push_back(&t);
  return out;
}

std::vector<TrainGroup> groups_of(const std::vector<Trajectory>& ts, const std::vector<double>& rewards) {
  std::vector<TrainGroup> out(2);
  for (std::size_t i = 0; i < ts.size(); ++i) {
    out[static_cast<std::size_t>(ts[i].group)].samples.push_back(&ts[i]);
    out[static_cast<std::size_t>(ts[i].group)].rewards.push_back(rewards[i]);
  }
  return out;
}

}  // namespace

TEST_CASE("rollout packing trains only the current iteration response tokens") {
  const std::vector<Trajectory> ts = sample_trajectories();
  const auto batches = pack_rollouts(pointers(ts), 2, 16, 2);
  std::size_t seen = 0;
  for (const RolloutBatch& rb : batches) {
    const Batch& b = rb.batch;
    CHECK(b.rows == 2);
    CHECK(static_cast<std::int64_t>(b.tokens.size()) <= 2 * 16);
    CHECK(b.cu_seqlens.size() == rb.trajectories.size() + 1);
    std::int64_t counted = 0;
    for (const PackedTrajectory& p : rb.trajectories) {
      const Trajectory& t = ts[p.trajectory];
      ++seen;
      // Tokens, positions, targets and the mask as the layout promises.
      for (std::int64_t k = 0; k < p.prompt + p.response; ++k) {
        const auto at = static_cast<std::size_t>(p.begin + k);
        const std::int32_t token = k < p.prompt ? t.prompt[static_cast<std::size_t>(k)]
                                                : t.response[static_cast<std::size_t>(k - p.prompt)];
        CHECK(b.tokens[at] == token);
        CHECK(b.position_ids[at] == k);
      }
      const std::vector<std::int64_t> trained = trained_positions(rb, p);
      std::size_t expected = 0;
      for (const std::int32_t it : t.produced_at) expected += it == 2 ? 1 : 0;
      CHECK(trained.size() == expected);
      for (const std::int64_t pos : trained) {
        const std::int64_t r = pos - p.begin + 1 - p.prompt;  // the response token it predicts
        CHECK(t.produced_at[static_cast<std::size_t>(r)] == 2);
        CHECK(b.targets[static_cast<std::size_t>(pos)] == t.response[static_cast<std::size_t>(r)]);
      }
      counted += static_cast<std::int64_t>(trained.size());
    }
    CHECK(b.loss_tokens == counted);
  }
  CHECK(seen == ts.size());
  // Everything trained with -1; a trajectory longer than a row is refused.
  std::int64_t all = 0;
  for (const auto& rb : pack_rollouts(pointers(ts), 1, 16, -1)) all += rb.batch.loss_tokens;
  std::int64_t responses = 0;
  for (const auto& t : ts) responses += static_cast<std::int64_t>(t.response.size());
  CHECK(all == responses);
  // Last segments: group 0 was produced in one iteration (all trained), group 1's first two
  // tokens in an earlier one.
  std::int64_t last = 0;
  for (const auto& rb : pack_rollouts(pointers(ts), 1, 16, kLastSegment)) last += rb.batch.loss_tokens;
  CHECK(last == responses - 2 * 3);
  CHECK_THROWS_AS(pack_rollouts(pointers(ts), 2, 8, -1), Error);
}

TEST_CASE("partial rollouts resumed across iterations equal an uninterrupted rollout") {
  for (const std::string arch : {"llama", "gpt2"}) {
    INFO(arch);
    TestModel t(small_recipe(arch));
    const auto prompts = random_docs({5, 2, 9}, 64, 92);
    auto fresh = [&] {
      std::vector<Trajectory> ts;
      for (std::int64_t g = 0; g < 3; ++g)
        for (std::int64_t j = 0; j < 2; ++j) {
          Trajectory tr;
          tr.problem = tr.group = g;
          tr.sample = j;
          tr.prompt = prompts[static_cast<std::size_t>(g)];
          tr.rng = sequence_seed(7, static_cast<std::uint64_t>(g), static_cast<std::uint64_t>(j));
          ts.push_back(tr);
        }
      return ts;
    };
    RolloutSettings s;
    s.sampling.temperature = 1.0;
    s.sampling.top_p = 0.95;
    s.max_response_length = 20;
    s.stop_tokens = {3};
    Generator whole(t.model.spec(), t.model.weights(), t.backend, t.mem, 6, 40);
    std::vector<Trajectory> once = fresh();
    const std::int64_t generated = extend_rollouts(whole, once, s, 1);

    s.segment_length = 4;
    std::vector<Trajectory> parts = fresh();
    std::int64_t total = 0;
    int iteration = 1;
    for (; iteration < 20; ++iteration) {
      // A fresh generator per iteration: nothing is carried in the cache, only in the trajectories.
      Generator g(t.model.spec(), t.model.weights(), t.backend, t.mem, 6, 40);
      total += extend_rollouts(g, parts, s, iteration);
      if (std::all_of(parts.begin(), parts.end(), [](const Trajectory& x) { return x.finished; })) break;
    }
    CHECK(total == generated);
    CHECK(iteration > 1);  // some rollout was actually cut
    bool any_multi = false;
    for (std::size_t i = 0; i < once.size(); ++i) {
      CHECK(parts[i].response == once[i].response);
      CHECK(parts[i].stopped == once[i].stopped);
      CHECK(parts[i].finished);
      // Each token is tagged with the iteration that sampled it: segment k covers tokens 4(k-1) ..
      for (std::size_t k = 0; k < parts[i].produced_at.size(); ++k)
        CHECK(parts[i].produced_at[k] == static_cast<std::int32_t>(1 + k / 4));
      any_multi = any_multi || parts[i].segments > 1;
    }
    CHECK(any_multi);
  }
}

TEST_CASE("policy loss gradient through the model matches finite differences") {
  for (const PolicyLossKind kind : {PolicyLossKind::k15, PolicyLossKind::pg, PolicyLossKind::grpo}) {
    INFO(policy_loss_name(kind));
    TestModel t(small_recipe("llama"));
    const auto comm = make_single_communicator(10);
    const std::vector<Trajectory> ts = sample_trajectories();
    const std::vector<double> rewards = {1, 0, 0.5, 0, 1, 1};
    PolicyLossSettings settings;
    settings.kind = kind;
    settings.tau = 0.5;
    settings.clip_eps = 0.3;
    PolicyUpdater updater(t.model, *comm, settings, 2, 32, 2);
    updater.compute_reference(groups_of(ts, rewards));
    // Move away from theta_i so the tau term and the ratio matter.
    Weights& w = t.model.weights();
    std::uint64_t state = 5;
    for (std::int64_t i = 0; i < w.numel(); ++i)
      w.params()[i] += 0.02f * (static_cast<float>(uniform_below(state, 2001)) / 1000.0f - 1.0f);
    auto loss = [&] {
      const double l = updater.accumulate(groups_of(ts, rewards), 0.5).loss;
      t.zero_grads();
      return l;
    };
    t.zero_grads();
    updater.accumulate(groups_of(ts, rewards), 0.5);
    const std::vector<float> grad = t.grads();
    // The largest gradients, by central differences in fp32 (step 1e-2 of a weight ~0.02-0.1).
    std::vector<std::int64_t> order(static_cast<std::size_t>(w.numel()));
    for (std::int64_t i = 0; i < w.numel(); ++i) order[static_cast<std::size_t>(i)] = i;
    std::partial_sort(order.begin(), order.begin() + 6, order.end(), [&](std::int64_t a, std::int64_t b) {
      return std::abs(grad[static_cast<std::size_t>(a)]) > std::abs(grad[static_cast<std::size_t>(b)]);
    });
    REQUIRE(std::abs(grad[static_cast<std::size_t>(order[0])]) > 1e-4);
    for (int n = 0; n < 6; ++n) {
      const std::int64_t i = order[static_cast<std::size_t>(n)];
      const float keep = w.params()[i], h = 1e-2f;
      w.params()[i] = keep + h;
      const double up = loss();
      w.params()[i] = keep - h;
      const double down = loss();
      w.params()[i] = keep;
      const double fd = (up - down) / (2.0 * h);
      const double g = grad[static_cast<std::size_t>(i)];
      INFO("parameter " << i << ": backward " << g << ", finite differences " << fd);
      CHECK(std::abs(g - fd) <= 0.03 * std::abs(g) + 1e-5);
    }
  }
}

TEST_CASE("at theta_i the k1.5 step equals policy gradient with a mean baseline") {
  TestModel t(small_recipe("gpt2"));
  const auto comm = make_single_communicator(10);
  const std::vector<Trajectory> ts = sample_trajectories();
  const std::vector<double> rewards = {1, 0, 0, 1, 1, 0.25};
  auto gradient = [&](PolicyLossKind kind, bool reference) {
    PolicyLossSettings s;
    s.kind = kind;
    s.tau = 0.3;
    PolicyUpdater u(t.model, *comm, s, 2, 32, 2);
    if (reference) u.compute_reference(groups_of(ts, rewards));
    t.zero_grads();
    u.accumulate(groups_of(ts, rewards), 0.5);
    return t.grads();
  };
  const std::vector<float> k15 = gradient(PolicyLossKind::k15, true), pg = gradient(PolicyLossKind::pg, true);
  const std::vector<float> own = gradient(PolicyLossKind::k15, false);  // each pass its own reference
  CHECK(k15 == pg);
  CHECK(own == pg);
  double norm = 0;
  for (float g : pg) norm += static_cast<double>(g) * g;
  CHECK(norm > 0);
}

TEST_CASE("the training pass scores rollouts with the probabilities the generator sampled them from") {
  for (const std::string arch : {"llama", "gpt2"}) {
    INFO(arch);
    TestModel t(small_recipe(arch));
    const std::vector<Trajectory> ts = sample_trajectories();
    const auto batches = pack_rollouts(pointers(ts), 2, 32, -1);
    Generator g(t.model.spec(), t.model.weights(), t.backend, t.mem, 1, 40);
    const std::int64_t V = t.model.spec().vocab_size;
    double worst = 0;
    std::size_t compared = 0;
    for (const RolloutBatch& rb : batches) {
      const std::vector<float> logp = t.model.token_logprobs(rb.batch);
      for (const PackedTrajectory& p : rb.trajectories) {
        const Trajectory& tr = ts[p.trajectory];
        const std::vector<std::int64_t> pos = trained_positions(rb, p);
        for (std::size_t k = 0; k < tr.response.size(); ++k) {
          // The generator's distribution after the prompt and the first k response tokens.
          std::vector<std::int32_t> context = tr.prompt;
          context.insert(context.end(), tr.response.begin(), tr.response.begin() + static_cast<std::ptrdiff_t>(k));
          std::vector<float> logits;
          g.prefill({0}, {context}, logits);
          double max = logits[0], sum = 0;
          for (std::int64_t v = 0; v < V; ++v) max = std::max(max, static_cast<double>(logits[static_cast<std::size_t>(v)]));
          for (std::int64_t v = 0; v < V; ++v) sum += std::exp(logits[static_cast<std::size_t>(v)] - max);
          const double expected = logits[static_cast<std::size_t>(tr.response[k])] - max - std::log(sum);
          worst = std::max(worst, std::abs(expected - logp[static_cast<std::size_t>(pos[k])]));
          ++compared;
        }
      }
    }
    CHECK(compared > 20);
    CHECK(worst < 1e-4);
  }
}
