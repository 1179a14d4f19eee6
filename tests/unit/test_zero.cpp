// ZeRO's single-process pieces: parameter units, sharded initialisation, AdamW over a shard,
// optimizer shards read back by another world size, and the communication buffers the Plan
// sizes. The collectives themselves run under mpirun in tests/cli/zero.sh and dist.sh.
#include <doctest/doctest.h>

#include <filesystem>

#include "core/error.hpp"
#include "model_support.hpp"
#include "optim/adamw.hpp"
#include "train/run_checkpoint.hpp"

namespace llmlab {
namespace {

using test::small_recipe;

TEST_CASE("parameter units partition the table and the tied head borrows the token embedding") {
  for (const std::string arch : {"gpt2", "llama"}) {
    CAPTURE(arch);
    const Recipe r = small_recipe(arch);
    const auto table = parameter_table(r.model);
    const auto units = parameter_units(r.model, table);
    REQUIRE(units.size() == static_cast<std::size_t>(r.model.num_layers) + 2);
    CHECK(units.front().name == "embedding");
    CHECK(units[1].name == "decoder.0");
    CHECK(units.back().name == "head");
    std::size_t next = 0;
    std::int64_t own = 0;
    for (const auto& u : units) {
      CHECK(u.first == next);  // own tensors are consecutive and cover the table once
      CHECK(u.last > u.first);
      next = u.last;
      std::int64_t n = 0;
      for (std::size_t t = u.first; t < u.last; ++t) n += table[t].numel();
      own += n;
      for (std::size_t t : u.borrowed) n += table[t].numel();
      CHECK(u.numel == n);
    }
    CHECK(next == table.size());
    CHECK(own == count_parameters(r.model).total);
    if (r.model.tie_embeddings) {
      REQUIRE(units.back().borrowed.size() == 1);
      CHECK(table[units.back().borrowed[0]].name == "transformer.wte.weight");
    } else {
      CHECK(units.back().borrowed.empty());
      CHECK(table[units.back().last - 1].name == "lm_head.weight");
    }
    std::int64_t largest = 0;
    for (const auto& u : units) largest = std::max(largest, u.numel);
    CHECK(count_parameters(r.model).largest_unit == largest);
  }
}

TEST_CASE("a shard initialises exactly the values of the whole buffer") {
  const Recipe r = small_recipe("gpt2");
  CpuBackend be(1);
  TrackedMemory mem(be);
  Weights whole(r.model, mem);
  whole.initialize(7);
  for (int world : {2, 3, 5}) {
    for (int rank = 0; rank < world; ++rank) {
      CAPTURE(world);
      CAPTURE(rank);
      Weights shard(r.model, mem, WeightsLayout{world, rank, true, true});
      shard.initialize(7);
      REQUIRE(shard.params_stored() == shard.shard_elements());
      const std::int64_t n = shard.shard_end() - shard.shard_begin();
      CHECK(std::equal(shard.params(), shard.params() + n, whole.params() + shard.shard_begin()));
      for (std::int64_t i = n; i < shard.shard_elements(); ++i) CHECK(shard.params()[i] == 0.0f);  // padding
    }
  }
}

TEST_CASE("AdamW over shards updates each element as AdamW over the whole buffer") {
  for (const std::string arch : {"llama", "gpt2"})
  for (int world : {2, 3, 4}) {
  CAPTURE(arch); CAPTURE(world);
  const Recipe r = small_recipe(arch, {"optim.weight_decay=0.1", "optim.grad_clip=0.5", "model.hidden_size=64", "model.intermediate_size=172"});
  CpuBackend be(1);
  TrackedMemory mem(be);
  Weights whole(r.model, mem);
  whole.initialize(3);
  std::uint64_t state = 11;
  for (std::int64_t i = 0; i < whole.numel(); ++i)
    whole.grads()[i] = static_cast<float>(static_cast<double>(uniform_below(state, 2001)) / 1000.0 - 1.0);
  const std::vector<float> p0(whole.params(), whole.params() + whole.numel());
  const std::vector<float> g0(whole.grads(), whole.grads() + whole.numel());
  AdamW all(whole, r.optim, be, mem);
  const UpdateStats s = all.update(1, 1e-2);
  all.update(2, 1e-2, s.grad_norm);  // a second step with moments in place

  for (int rank = 0; rank < world; ++rank) {
    CAPTURE(rank);
    Weights w(r.model, mem, WeightsLayout{world, rank, false, false});
    std::copy(p0.begin(), p0.end(), w.params());
    std::copy(g0.begin(), g0.end(), w.grads());
    AdamW part(w, r.optim, be, mem, w.shard_begin(), w.shard_end(), w.shard_elements());
    part.update(1, 1e-2, s.grad_norm);  // the global norm, as ZeRO passes it
    part.update(2, 1e-2, s.grad_norm);
    CHECK(std::equal(w.params() + w.shard_begin(), w.params() + w.shard_end(), whole.params() + w.shard_begin()));
    CHECK(std::equal(part.m(), part.m() + (w.shard_end() - w.shard_begin()), all.m() + w.shard_begin()));
  }
  }
}

TEST_CASE("optimizer shards written by one world size are read by another") {
  const Recipe r = small_recipe("gpt2");
  CpuBackend be(1);
  TrackedMemory mem(be);
  const auto dir = std::filesystem::temp_directory_path() / ("llmlab-zero-ckpt-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  Weights whole(r.model, mem);
  whole.initialize(5);
  const std::int64_t n = whole.numel();
  std::vector<float> m(static_cast<std::size_t>(n)), v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) m[static_cast<std::size_t>(i)] = static_cast<float>(i), v[static_cast<std::size_t>(i)] = static_cast<float>(2 * i);
  RunState st;
  st.step = 9;
  st.recipe_hash = "abc";
  // Written as two ZeRO shards.
  for (int rank = 0; rank < 2; ++rank) {
    Weights w(r.model, mem, WeightsLayout{2, rank, false, false});
    std::copy(whole.params(), whole.params() + n, w.params());
    AdamW opt(w, r.optim, be, mem, w.shard_begin(), w.shard_end(), w.shard_elements());
    std::copy(m.begin() + w.shard_begin(), m.begin() + w.shard_end(), opt.m());
    std::copy(v.begin() + w.shard_begin(), v.begin() + w.shard_end(), opt.v());
    CheckpointPart part;
    part.shard = rank;
    part.shards = 2;
    part.model = rank == 0;
    save_checkpoint_files(dir.string(), w, w.params(), opt, be, st, r.model, nlohmann::ordered_json::object(), part);
  }
  CHECK(std::filesystem::exists(dir / optimizer_shard_name(1, 2)));
  // Read by three ZeRO-3 ranks (sharded parameters) and by one process.
  for (int world : {3, 1}) {
    for (int rank = 0; rank < world; ++rank) {
      CAPTURE(world);
      Weights w(r.model, mem, WeightsLayout{world, rank, world > 1, world > 1});
      AdamW opt(w, r.optim, be, mem, w.shard_begin(), w.shard_end(), w.shard_elements());
      const RunState back = load_checkpoint_files(dir.string(), w, opt, be);
      CHECK(back.step == 9);
      const std::int64_t len = w.shard_end() - w.shard_begin();
      CHECK(std::equal(opt.m(), opt.m() + len, m.begin() + w.shard_begin()));
      CHECK(std::equal(opt.v(), opt.v() + len, v.begin() + w.shard_begin()));
      CHECK(std::equal(w.params(), w.params() + len, whole.params() + w.shard_begin()));
    }
  }
  // A missing shard is a clear error, not zeros.
  std::filesystem::remove(dir / optimizer_shard_name(1, 2));
  Weights w(r.model, mem);
  AdamW opt(w, r.optim, be, mem);
  CHECK_THROWS_WITH_AS(load_checkpoint_files(dir.string(), w, opt, be),
                       doctest::Contains("a shard file is missing"), InputError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("the communication buffers of each ZeRO stage follow from the largest unit and the bucket") {
  const Recipe r = small_recipe("gpt2", {"dist.world_size=4", "zero.bucket_elements=1000", "zero.prefetch_layers=2"});
  const ParameterCounts c = count_parameters(r.model);
  const std::int64_t shard = (c.total + 3) / 4;
  RunSettings run = resolved_run_settings(r, 0);
  for (int stage = 0; stage <= 3; ++stage) {
    CAPTURE(stage);
    run.zero.stage = stage;
    const ZeroBuffers z = zero_buffers(c, run);
    CHECK(z.gather_slots * z.gather_slot == (stage == 3 ? 3 * c.largest_unit : 0));
    CHECK(z.grad_buckets * z.grad_bucket == (stage >= 2 ? 2 * c.largest_unit : 0));
    CHECK(z.scratch == (stage == 0 ? 4 * 250 : 4 * std::min<std::int64_t>(1000, shard)));
    const Plan plan = make_plan(r.model, run);
    CHECK(plan.bytes(Category::comm) == 4 * z.total());
  }
  run.dist.world_size = 1;
  CHECK(zero_buffers(c, run).total() == 0);
}

}  // namespace
}  // namespace llmlab
