// The model executing its Plan: every checkpointing policy gives bit-identical gradients,
// packing does not change loss or gradients, documents never see each other, the whole
// model's gradient matches finite differences, and tracked memory peaks where the Plan says.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model_support.hpp"
#include "optim/adamw.hpp"
#include "model/safetensors.hpp"
#include "train/run_checkpoint.hpp"

using namespace llmlab;
using namespace llmlab::test;

namespace {

struct Result {
  double loss_sum = 0;
  std::vector<float> grads;
  std::int64_t measured = 0, planned = 0;
};

Result run_batch(const Recipe& r, const std::vector<Batch>& batches) {
  TestModel t(r);
  AdamW optimizer(t.model.weights(), r.optim, t.backend, t.mem);  // its moments are part of the plan
  std::int64_t tokens = 0;
  for (const auto& b : batches) tokens += b.loss_tokens;
  Result res;
  for (const auto& b : batches) res.loss_sum += t.model.forward_backward(b, 1.0f / static_cast<float>(tokens));
  res.grads = t.grads();
  res.measured = t.mem.peak_bytes();
  res.planned = t.model.plan().peak_bytes;
  return res;
}

double relative_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

const std::vector<std::vector<std::string>> kPolicies = {
    {"checkpointing.policy=none"},
    {"checkpointing.policy=full"},
    {"checkpointing.policy=selective", "checkpointing.selective=core"},
    {"checkpointing.policy=selective", "checkpointing.selective=pointwise"},
    {"checkpointing.policy=every_k", "checkpointing.every_k=2"},
    {"checkpointing.policy=every_k", "checkpointing.every_k=3"},
    {"checkpointing.policy=sqrt"},
    {"checkpointing.policy=budget", "checkpointing.budget=400KiB"},
};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_CASE("model: every checkpointing policy gives bit-identical gradients") {
  for (const char* arch : {"llama", "gpt2"}) {
    for (const char* attn : {"flash", "naive"}) {
      const auto docs = random_docs({9, 14, 9, 20, 12}, 64, 7);
      const Batch batch = make_rows(docs, {{0, 1, 2}, {3, 4}});
      const std::vector<std::string> base{std::string("train.attention=") + attn};
      const Result reference = run_batch(small_recipe(arch, with(base, kPolicies[0])), {batch});
      for (std::size_t p = 1; p < kPolicies.size(); ++p) {
        CAPTURE(arch);
        CAPTURE(attn);
        CAPTURE(kPolicies[p][0]);
        const Result r = run_batch(small_recipe(arch, with(base, kPolicies[p])), {batch});
        CHECK(r.loss_sum == reference.loss_sum);
        REQUIRE(r.grads.size() == reference.grads.size());
        std::size_t differing = 0;
        for (std::size_t i = 0; i < r.grads.size(); ++i) differing += r.grads[i] != reference.grads[i];
        CHECK(differing == 0);
      }
    }
  }
}

TEST_CASE("model: measured peak memory equals the plan within 3 percent for every policy") {
  for (const char* arch : {"llama", "gpt2"}) {
    for (const char* attn : {"flash", "naive"}) {
      const auto docs = random_docs({32, 32}, 64, 3);  // full rows: the plan's capacity
      const Batch batch = make_rows(docs, {{0}, {1}});
      for (const auto& policy : kPolicies) {
        CAPTURE(arch);
        CAPTURE(attn);
        CAPTURE(policy[0]);
        const Result r = run_batch(small_recipe(arch, with({std::string("train.attention=") + attn}, policy)), {batch});
        const double error = static_cast<double>(r.measured - r.planned) / static_cast<double>(r.planned);
        CAPTURE(r.measured);
        CAPTURE(r.planned);
        CHECK(std::abs(error) < 0.03);
      }
    }
  }
}

TEST_CASE("model: packed and unpacked documents give the same loss and gradients") {
  for (const char* arch : {"llama", "gpt2"}) {
    const auto docs = random_docs({10, 7, 12, 3, 20, 5}, 64, 11);
    // Packed: six documents in two rows. Unpacked: one document per row, three micro-batches.
    const Result packed = run_batch(small_recipe(arch), {make_rows(docs, {{0, 1, 2, 3}, {4, 5}})});
    const Result unpacked = run_batch(small_recipe(arch), {make_rows(docs, {{0}, {1}}), make_rows(docs, {{2}, {3}}),
                                                           make_rows(docs, {{4}, {5}})});
    CAPTURE(arch);
    CHECK(std::abs(packed.loss_sum - unpacked.loss_sum) <= 1e-5 * std::abs(unpacked.loss_sum));
    // Float sums in another order (GEMMs over other row counts): a relative error of 1e-5.
    CHECK(relative_l2(packed.grads, unpacked.grads) < 1e-5);
  }
}

TEST_CASE("model: a document is not affected by the other documents of its row") {
  for (const char* arch : {"llama", "gpt2"}) {
    auto docs = random_docs({11, 15, 6}, 64, 5);
    TestModel t(small_recipe(arch));
    const Batch a = make_rows(docs, {{0, 1}, {2}});
    t.model.forward_loss(a);
    docs[1] = random_docs({15}, 64, 99)[0];  // another second document
    const Batch b = make_rows(docs, {{0, 1}, {2}});
    // The loss of the first document alone (forward_loss sums all): compare via a batch without it.
    const double la = t.model.forward_loss(a), lb = t.model.forward_loss(b);
    const Batch a1 = make_rows(docs, {{1}, {2}});
    const double without_first = t.model.forward_loss(a1);
    const Batch b1 = make_rows(random_docs({11, 15, 6}, 64, 5), {{1}, {2}});
    const double without_first_a = t.model.forward_loss(b1);
    CAPTURE(arch);
    // la - loss(doc1_a, doc2) equals lb - loss(doc1_b, doc2): the first document's loss is the same.
    CHECK(std::abs((la - without_first_a) - (lb - without_first)) < 1e-3);
  }
}

TEST_CASE("model: whole-model gradient matches central finite differences") {
  for (const char* arch : {"llama", "gpt2"}) {
    const auto docs = random_docs({9, 14, 9}, 64, 21);
    const Batch batch = make_rows(docs, {{0, 1}, {2}});
    TestModel t(small_recipe(arch));
    const float scale = 1.0f / static_cast<float>(batch.loss_tokens);
    t.model.forward_backward(batch, scale);
    const auto grads = t.grads();
    Weights& w = t.model.weights();
    // Probe a few entries of every tensor: loss(p + h) - loss(p - h) over 2h, in float64 sums.
    std::uint64_t state = 1;
    int checked = 0, bad = 0;
    for (std::size_t ti = 0; ti < w.table().size(); ++ti) {
      for (int probe = 0; probe < 3; ++probe) {
        const auto i = static_cast<std::size_t>(w.offset(ti)) +
                       uniform_below(state, static_cast<std::uint64_t>(w.table()[ti].numel()));
        float* p = w.params() + i;
        const float saved = *p, h = 1e-2f;
        *p = saved + h;
        const double up = t.model.forward_loss(batch) * scale;
        *p = saved - h;
        const double down = t.model.forward_loss(batch) * scale;
        *p = saved;
        const double fd = (up - down) / (2.0 * h);
        ++checked;
        // fp32 forward: differences of ~1e-7 relative in the loss bound the numeric gradient's
        // error near 1e-5 absolute; curvature adds O(h^2).
        if (std::abs(fd - grads[i]) > 2e-3 * std::max(1.0, std::abs(fd)) + 5e-5) {
          ++bad;
          MESSAGE(w.table()[ti].name << " [" << i - static_cast<std::size_t>(w.offset(ti)) << "]: analytic " << grads[i]
                                     << " numeric " << fd);
        }
      }
    }
    CAPTURE(arch);
    CHECK(checked > 30);
    CHECK(bad == 0);
  }
}

TEST_CASE("model: the checkpoint config.json describes the same model to a Hugging Face loader") {
  for (const char* arch : {"llama", "gpt2"}) {
    const Recipe r = small_recipe(arch);
    // Read back through llmlab's own config.json importer (model.hf_config), which follows
    // transformers' field names: the same shape and parameter count.
    const std::string config = write_temp(std::string("hf-") + arch + "/config.json", hf_config_json(r.model).dump(2));
    const std::string recipe = write_temp(std::string("hf-") + arch + ".yaml",
                                          "model:\n  hf_config: " + config + "\n");
    const Recipe back = load_recipe(recipe, {"hardware.device=cpu", "hardware.memory=1GiB"});
    CAPTURE(arch);
    CHECK(back.model.arch == r.model.arch);
    CHECK(back.model.num_kv_heads == r.model.num_kv_heads);
    CHECK(back.model.head_dim == r.model.head_dim);
    CHECK(back.model.tie_embeddings == r.model.tie_embeddings);
    CHECK(count_parameters(back.model).total == count_parameters(r.model).total);
  }
}

TEST_CASE("model: init-from loads Hugging Face names with or without the base-model prefix") {
  for (const char* arch : {"gpt2", "llama"}) {
    TestModel source(small_recipe(arch, {"train.seed=5"}));
    const Weights& w = source.model.weights();
    // As openai-community/gpt2 stores them: "h.0.ln_1.weight", not "transformer.h.0.ln_1.weight".
    std::vector<TensorToWrite> stripped;
    for (std::size_t i = 0; i < w.table().size(); ++i) {
      const std::string& name = w.table()[i].name;
      const std::string short_name = name.find('.') != std::string::npos && name.rfind("lm_head", 0) != 0
                                         ? name.substr(name.find('.') + 1)
                                         : name;
      stripped.push_back({short_name, "F32", w.table()[i].shape, w.params() + w.offset(i)});
    }
    stripped.push_back({"h.0.attn.masked_bias", "F32", {1}, w.params()});  // an extra tensor: ignored
    const std::string path = write_temp(std::string("stripped-") + arch + ".safetensors", "");
    write_safetensors(path, stripped);
    TestModel target(small_recipe(arch, {"train.seed=6"}));
    const auto extra = load_weights(path, target.model.weights(), target.backend);
    CAPTURE(arch);
    CHECK(extra.size() == 1);
    const Weights& t = target.model.weights();
    CHECK(std::equal(t.params(), t.params() + t.numel(), w.params()));
  }
}
