// KV-cached generation (lib/model/generator, lib/rl/generate) against full recomputation, for a
// small GPT-2 and a small Llama: the cached decode's logits agree with running the whole
// prefix again, and batched generation of prompts of different lengths produces exactly the
// tokens of a reference that recomputes every prefix, greedy and seeded sampling alike.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/generator.hpp"
#include "model_support.hpp"
#include "rl/generate.hpp"

using namespace llmlab;
using namespace llmlab::test;

namespace {

using Prompts = std::vector<std::vector<std::int32_t>>;

constexpr std::int64_t kCapacity = 48;  // within GPT-2's 64 learned positions

Generator make_generator(TestModel& t, std::int64_t sequences) {
  return Generator(t.model.spec(), t.model.weights(), t.backend, t.mem, sequences, kCapacity);
}

// max |a - b| / max |b|: the decode kernel sums a softmax row in one pass in key order, the
// flash kernel online over tiles, and the GEMMs run over other row counts, so the two paths
// agree to fp32 rounding amplified through three layers, not bitwise. Seen: 4e-7.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return err / std::max(scale, 1e-30);
}

// The reference: the same sampling loop, but every step recomputes each active sequence's
// whole prefix with a fresh prefill (packed, flash attention) instead of decoding from the cache.
std::vector<Completion> recompute_reference(TestModel& t, const Prompts& prompts, const GenerationSettings& s) {
  const std::int64_t k = s.samples_per_prompt, V = t.model.spec().vocab_size;
  Generator g = make_generator(t, static_cast<std::int64_t>(prompts.size()) * k);
  std::vector<Completion> out;
  std::vector<std::uint64_t> state;
  Prompts prefix;
  for (std::size_t p = 0; p < prompts.size(); ++p)
    for (std::int64_t j = 0; j < k; ++j) {
      out.push_back({static_cast<std::int64_t>(p), j, {}, false});
      state.push_back(sequence_seed(s.seed, p, static_cast<std::uint64_t>(j)));
      prefix.push_back(prompts[p]);
    }
  std::vector<std::int32_t> active;
  for (std::size_t i = 0; i < out.size(); ++i) active.push_back(static_cast<std::int32_t>(i));
  std::vector<float> logits;
  while (!active.empty()) {
    Prompts batch;
    for (std::int32_t a : active) batch.push_back(prefix[static_cast<std::size_t>(a)]);
    g.prefill(active, batch, logits);
    std::vector<std::int32_t> still;
    for (std::size_t i = 0; i < active.size(); ++i) {
      const auto a = static_cast<std::size_t>(active[i]);
      const std::int32_t token = sample_token(logits.data() + static_cast<std::int64_t>(i) * V, V, s.sampling, state[a]);
      out[a].tokens.push_back(token);
      prefix[a].push_back(token);
      out[a].stopped = std::find(s.stop_tokens.begin(), s.stop_tokens.end(), token) != s.stop_tokens.end();
      if (!out[a].stopped && static_cast<std::int64_t>(out[a].tokens.size()) < s.max_new_tokens) still.push_back(active[i]);
    }
    active = still;
  }
  return out;
}

Prompts test_prompts() { return random_docs({5, 1, 12, 8}, 64, 21); }

GenerationSettings generation(double temperature, std::int64_t top_k, double top_p, std::uint64_t seed) {
  GenerationSettings s;
  s.sampling.temperature = temperature;
  s.sampling.top_k = top_k;
  s.sampling.top_p = top_p;
  s.max_new_tokens = 14;
  s.samples_per_prompt = 2;
  s.seed = seed;
  return s;
}

}  // namespace

TEST_CASE("generation: cached decode logits agree with recomputing the full prefix") {
  for (const char* arch : {"gpt2", "llama"}) {
    CAPTURE(arch);
    TestModel t(small_recipe(arch));
    const Prompts prompts = test_prompts();
    const Prompts continuation = random_docs({10, 10, 10, 10}, 64, 5);
    const std::vector<int> steps{10, 3, 7, 10};  // sequences leave the batch at different steps
    const std::int64_t before = t.mem.live(Category::activations);
    Generator cached = make_generator(t, 4);
    CHECK(t.mem.live(Category::activations) - before == KvCache::bytes(t.model.spec(), 4, kCapacity));
    Generator full = make_generator(t, 4);

    std::vector<std::int32_t> seqs{0, 1, 2, 3};
    std::vector<float> a, b;
    cached.prefill(seqs, prompts, a);
    full.prefill(seqs, prompts, b);
    CHECK(a == b);  // the same computation
    Prompts prefix = prompts;
    for (int step = 0; step < 10; ++step) {
      CAPTURE(step);
      std::vector<std::int32_t> active, tokens;
      Prompts batch;
      for (std::int32_t s = 0; s < 4; ++s) {
        if (step >= steps[static_cast<std::size_t>(s)]) continue;
        const std::int32_t token = continuation[static_cast<std::size_t>(s)][static_cast<std::size_t>(step)];
        active.push_back(s);
        tokens.push_back(token);
        prefix[static_cast<std::size_t>(s)].push_back(token);
        batch.push_back(prefix[static_cast<std::size_t>(s)]);
      }
      cached.decode(active, tokens, a);
      full.prefill(active, batch, b);
      const double err = relative_error(a, b);
      CAPTURE(err);
      CHECK(err <= 1e-4);
      for (std::size_t i = 0; i < active.size(); ++i) CHECK(cached.length(active[i]) == static_cast<std::int64_t>(prefix[static_cast<std::size_t>(active[i])].size()));
    }
  }
}

TEST_CASE("generation: KV-cache generation produces exactly the tokens of full recomputation") {
  struct Mode {
    std::string name;
    GenerationSettings s;
  };
  const std::vector<Mode> modes{{"greedy", generation(0, 0, 1, 1)},
                                {"top-p 0.9", generation(1.0, 0, 0.9, 2)},
                                {"top-k 20, temperature 0.8", generation(0.8, 20, 1, 3)}};
  for (const char* arch : {"gpt2", "llama"}) {
    TestModel t(small_recipe(arch));
    const Prompts prompts = test_prompts();
    for (const auto& mode : modes) {
      CAPTURE(arch);
      CAPTURE(mode.name);
      Generator g = make_generator(t, 8);
      const std::vector<Completion> got = generate(g, prompts, mode.s);
      const std::vector<Completion> want = recompute_reference(t, prompts, mode.s);
      REQUIRE(got.size() == want.size());
      for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(got[i].prompt == want[i].prompt);
        CHECK(got[i].sample == want[i].sample);
        CHECK(got[i].tokens == want[i].tokens);
        CHECK(got[i].stopped == want[i].stopped);
        CHECK(got[i].tokens.size() == 14);
      }
    }
  }
}

TEST_CASE("generation: stop tokens end a response early, also under recomputation") {
  for (const char* arch : {"gpt2", "llama"}) {
    CAPTURE(arch);
    TestModel t(small_recipe(arch));
    const Prompts prompts = test_prompts();
    GenerationSettings s = generation(1.0, 0, 1, 9);
    Generator g = make_generator(t, 8);
    const std::vector<Completion> free_run = generate(g, prompts, s);
    // Stop at the third token of the first response: it must end at its first occurrence.
    s.stop_tokens = {free_run[0].tokens[2]};
    const std::vector<Completion> stopped = generate(g, prompts, s);
    const auto& first = free_run[0].tokens;
    const auto end = std::find(first.begin(), first.end(), s.stop_tokens[0]) + 1;
    CHECK(stopped[0].tokens == std::vector<std::int32_t>(first.begin(), end));
    CHECK(stopped[0].stopped);
    const std::vector<Completion> want = recompute_reference(t, prompts, s);
    for (std::size_t i = 0; i < stopped.size(); ++i) {
      CAPTURE(i);
      CHECK(stopped[i].tokens == want[i].tokens);
      CHECK(stopped[i].stopped == want[i].stopped);
      // A stopped response ends with its stop token; the others run to the cap.
      if (stopped[i].stopped) CHECK(stopped[i].tokens.back() == s.stop_tokens[0]);
      else CHECK(stopped[i].tokens.size() == 14);
    }
  }
}

TEST_CASE("generation: a seed gives the same completions, and samples of one prompt differ") {
  TestModel t(small_recipe("llama"));
  const Prompts prompts = test_prompts();
  GenerationSettings s = generation(1.0, 0, 1, 4);
  s.samples_per_prompt = 2;
  Generator g = make_generator(t, 8);
  const auto a = generate(g, prompts, s), b = generate(g, prompts, s);
  s.seed = 5;
  const auto c = generate(g, prompts, s);
  bool same_ab = true, same_ac = true, samples_differ = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    same_ab = same_ab && a[i].tokens == b[i].tokens;
    same_ac = same_ac && a[i].tokens == c[i].tokens;
  }
  for (std::size_t i = 0; i + 1 < a.size(); i += 2) samples_differ = samples_differ || a[i].tokens != a[i + 1].tokens;
  CHECK(same_ab);
  CHECK_FALSE(same_ac);
  CHECK(samples_differ);
}

TEST_CASE("generation: bad requests are rejected") {
  TestModel t(small_recipe("gpt2"));
  Generator g = make_generator(t, 2);
  std::vector<float> logits;
  CHECK_THROWS(g.decode({0}, {1}, logits));                         // never prefilled
  const std::vector<std::int32_t> one{1}, empty, too_long(kCapacity + 1, 1);
  CHECK_THROWS(g.prefill({0}, Prompts{empty}, logits));          // empty prompt
  CHECK_THROWS(g.prefill({2}, Prompts{one}, logits));            // no such sequence
  CHECK_THROWS(g.prefill({0, 0}, Prompts{one, one}, logits));    // listed twice
  CHECK_THROWS(g.prefill({0}, Prompts{too_long}, logits));       // over capacity
  GenerationSettings s = generation(0, 0, 1, 0);
  CHECK_THROWS(generate(g, test_prompts(), s));  // 4 prompts x 2 samples > 2 sequences
  CHECK_THROWS(Generator(t.model.spec(), t.model.weights(), t.backend, t.mem, 2, 65));  // past GPT-2's positions
}
