// Helpers for model tests: small recipes, deterministic packed batches, and a model with its
// backend and tracked memory in one object.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/random.hpp"
#include "data/batch.hpp"
#include "model/model.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "recipe/recipe.hpp"
#include "test_support.hpp"
#include "tools/recipe_plan.hpp"

namespace llmlab::test {

// A small model of `arch` on the CPU, fp32, with extra overrides.
inline Recipe small_recipe(const std::string& arch, std::vector<std::string> extra = {}) {
  std::vector<std::string> o;
  if (arch == "gpt2") {
    o = {"model.name=test-gpt2", "model.arch=gpt2", "model.vocab_size=64", "model.hidden_size=32", "model.num_layers=3",
         "model.num_heads=4", "model.num_kv_heads=4", "model.head_dim=8", "model.intermediate_size=64",
         "model.max_position_embeddings=64", "model.tie_embeddings=true", "model.qkv_bias=true", "model.o_bias=true",
         "model.mlp_bias=true"};
  } else {
    o = {"model.name=test-llama", "model.arch=llama", "model.vocab_size=64", "model.hidden_size=32", "model.num_layers=3",
         "model.num_heads=4", "model.num_kv_heads=2", "model.head_dim=8", "model.intermediate_size=48",
         "model.tie_embeddings=false"};
  }
  for (auto& e : std::vector<std::string>{"data.packing_length=32", "train.micro_batch_size=2", "hardware.memory=1GiB",
                                          "train.precision=fp32"})
    o.push_back(e);
  for (auto& e : extra) o.push_back(e);
  const std::string base = write_temp("model-test-recipe.yaml", "defaults: [" + source_path("recipes/hardware/cpu.yaml") + "]\n");
  return load_recipe(base, o);
}

// Documents of given lengths with seeded random tokens below `vocab`.
inline std::vector<std::vector<std::int32_t>> random_docs(const std::vector<int>& lengths, int vocab, std::uint64_t seed) {
  std::uint64_t state = seed;
  std::vector<std::vector<std::int32_t>> docs;
  for (int len : lengths) {
    std::vector<std::int32_t> d;
    for (int i = 0; i < len; ++i) d.push_back(static_cast<std::int32_t>(uniform_below(state, static_cast<std::uint64_t>(vocab))));
    docs.push_back(d);
  }
  return docs;
}

// Rows holding the given documents (indices into `docs`), loss mask 1 except where `masked`.
inline Batch make_rows(const std::vector<std::vector<std::int32_t>>& docs, const std::vector<std::vector<int>>& rows) {
  std::vector<PackedRow> packed;
  for (const auto& row : rows) {
    PackedRow r;
    for (int d : row) {
      const auto& doc = docs[static_cast<std::size_t>(d)];
      r.tokens.insert(r.tokens.end(), doc.begin(), doc.end());
      for (std::size_t i = 0; i < doc.size(); ++i) r.loss_mask.push_back(i % 7 == 3 ? 0 : 1);
      r.docs.push_back({static_cast<std::uint32_t>(doc.size()), 0});
    }
    packed.push_back(r);
  }
  return BatchReader::make_batch(packed);
}

struct TestModel {
  explicit TestModel(const Recipe& r, int threads = 0)
      : backend(threads), mem(backend), model(plan_recipe(r), backend, mem) {
    model.weights().initialize(r.train.seed);
    backend.zero(model.weights().grads(), model.weights().numel());
  }
  std::vector<float> grads() const {
    const auto& w = model.weights();
    return std::vector<float>(w.grads(), w.grads() + w.numel());
  }
  void zero_grads() { backend.zero(model.weights().grads(), model.weights().numel()); }
  CpuBackend backend;
  TrackedMemory mem;
  Model model;
};

}  // namespace llmlab::test
