// The model against PyTorch in float64 (scripts/reference/make_train_reference.py, Hugging
// Face GPT2LMHeadModel / LlamaForCausalLM math): loss and every gradient of a packed batch of
// four documents, then three AdamW steps with clipping — losses and gradient norms.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "model/safetensors.hpp"
#include "model_support.hpp"
#include "optim/adamw.hpp"

using namespace llmlab;
using namespace llmlab::test;

namespace {

std::vector<std::string> reference_overrides(const std::string& arch) {
  std::vector<std::string> o{"model.vocab_size=320", "model.hidden_size=64", "model.num_layers=2", "model.num_heads=4",
                             "model.head_dim=16", "data.packing_length=48", "train.micro_batch_size=2",
                             "hardware.memory=1GiB", "train.precision=fp32", "optim.lr=0.01", "optim.beta1=0.9",
                             "optim.beta2=0.95", "optim.eps=1e-8", "optim.weight_decay=0.1", "optim.grad_clip=1.0",
                             "optim.schedule=constant", "model.arch=" + arch};
  if (arch == "gpt2")
    for (auto e : {"model.num_kv_heads=4", "model.intermediate_size=256", "model.max_position_embeddings=128",
                   "model.tie_embeddings=true", "model.qkv_bias=true", "model.o_bias=true", "model.mlp_bias=true"})
      o.push_back(e);
  else
    for (auto e : {"model.num_kv_heads=2", "model.intermediate_size=172", "model.tie_embeddings=false"}) o.push_back(e);
  return o;
}

template <class T>
std::vector<T> read_all(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsTensor& t = f.at(name);
  std::vector<T> v(static_cast<std::size_t>(t.numel));
  std::memcpy(v.data(), t.data, t.bytes);
  return v;
}

Batch reference_batch(const SafetensorsFile& f) {
  Batch b;
  b.tokens = read_all<std::int32_t>(f, "batch.tokens");
  b.targets = read_all<std::int32_t>(f, "batch.targets");
  b.position_ids = read_all<std::int32_t>(f, "batch.position_ids");
  b.cu_seqlens = read_all<std::int32_t>(f, "batch.cu_seqlens");
  b.loss_mask = read_all<std::uint8_t>(f, "batch.loss_mask");
  b.rows = 2;
  for (std::size_t d = 0; d + 1 < b.cu_seqlens.size(); ++d)
    b.max_seqlen = std::max(b.max_seqlen, b.cu_seqlens[d + 1] - b.cu_seqlens[d]);
  for (std::size_t i = 0; i < b.tokens.size(); ++i) b.loss_tokens += b.loss_mask[i] && b.targets[i] >= 0;
  return b;
}

}  // namespace

TEST_CASE("model: loss gradients and AdamW steps match PyTorch float64 references") {
  for (const char* arch : {"gpt2", "llama"}) {
    CAPTURE(arch);
    const SafetensorsFile ref(source_path(std::string("tests/data/reference/") + arch + "_tiny.safetensors"));
    const std::string base = write_temp("reference-recipe.yaml", "defaults: [" + source_path("recipes/hardware/cpu.yaml") + "]\n");
    const Recipe recipe = load_recipe(base, reference_overrides(arch));
    TestModel t(recipe);
    Weights& w = t.model.weights();
    for (std::size_t i = 0; i < w.table().size(); ++i)
      ref.read_f32(w.table()[i].name, w.table()[i].shape, w.params() + w.offset(i));
    const Batch batch = reference_batch(ref);
    const float scale = 1.0f / static_cast<float>(batch.loss_tokens);

    const double loss = t.model.forward_backward(batch, scale) / static_cast<double>(batch.loss_tokens);
    const double expected = read_all<double>(ref, "expected.loss")[0];
    CHECK(std::abs(loss - expected) < 1e-5 * expected);
    // Every gradient tensor: fp32 against float64, max error within 1e-4 of the tensor's scale.
    for (std::size_t i = 0; i < w.table().size(); ++i) {
      const auto want = read_all<double>(ref, "expected.grad." + w.table()[i].name);
      double max_err = 0, max_ref = 0;
      for (std::size_t j = 0; j < want.size(); ++j) {
        max_err = std::max(max_err, std::abs(w.grads()[static_cast<std::size_t>(w.offset(i)) + j] - want[j]));
        max_ref = std::max(max_ref, std::abs(want[j]));
      }
      CAPTURE(w.table()[i].name);
      CAPTURE(max_err);
      CAPTURE(max_ref);
      CHECK(max_err <= 1e-4 * max_ref + 1e-7);
    }

    // Three AdamW steps on the same batch (the first from the gradients above).
    AdamW optimizer(w, recipe.optim, t.backend, t.mem);
    const auto losses = read_all<double>(ref, "expected.adamw_losses");
    const auto norms = read_all<double>(ref, "expected.adamw_grad_norms");
    for (std::int64_t step = 1; step <= 3; ++step) {
      if (step > 1) {
        t.zero_grads();
        const double l = t.model.forward_backward(batch, scale) / static_cast<double>(batch.loss_tokens);
        CHECK(std::abs(l - losses[static_cast<std::size_t>(step - 1)]) < 1e-4 * losses[0]);
      }
      const UpdateStats u = optimizer.update(step, learning_rate(recipe.optim, step, 3));
      CHECK(std::abs(u.grad_norm - norms[static_cast<std::size_t>(step - 1)]) < 1e-4 * norms[static_cast<std::size_t>(step - 1)]);
    }
    const double final_loss = t.model.forward_loss(batch) / static_cast<double>(batch.loss_tokens);
    CHECK(std::abs(final_loss - read_all<double>(ref, "expected.adamw_final_loss")[0]) < 1e-4 * losses[0]);
  }
}
