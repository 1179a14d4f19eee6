// The planner's formulas against hand-computed values from the papers they come from:
// ZeRO (arXiv 1910.02054) model states per stage, and Korthikanti et al. (arXiv 2205.05198)
// activations per layer.
#include <doctest/doctest.h>

#include "plan/plan.hpp"
#include "recipe/recipe.hpp"
#include "test_support.hpp"

using namespace llmlab;
using llmlab::test::source_path;

TEST_CASE("mixed-precision AdamW is 16 bytes/param: 7B at stage 0 is 112 GB") {
  const ModelStates s = model_states(7'000'000'000, 0, 1, Precision::bf16_mixed, GradDtype::bf16);
  CHECK(s.params_bytes == 14'000'000'000);
  CHECK(s.grads_bytes == 14'000'000'000);
  CHECK(s.master_bytes == 28'000'000'000);
  CHECK(s.adam_bytes == 56'000'000'000);
  CHECK(s.total() == 112'000'000'000);
}

TEST_CASE("ZeRO paper: 7.5B on 64 GPUs is 120 / 31.4 / 16.6 / 1.9 GB") {
  const std::int64_t psi = 7'500'000'000, nd = 64;
  auto total = [&](std::int64_t stage) { return model_states(psi, stage, nd, Precision::bf16_mixed, GradDtype::bf16).total(); };
  // Stage 0: 16 psi; 1: 4 psi + 12 psi/Nd; 2: 2 psi + 14 psi/Nd; 3: 16 psi/Nd.
  CHECK(total(0) == 16 * psi);
  CHECK(total(1) == 4 * psi + 12 * psi / nd);
  CHECK(total(2) == 2 * psi + 14 * psi / nd);
  CHECK(total(3) == 16 * psi / nd);
  CHECK(static_cast<double>(total(1)) / 1e9 == doctest::Approx(31.4).epsilon(0.002));
  CHECK(static_cast<double>(total(2)) / 1e9 == doctest::Approx(16.6).epsilon(0.003));
  CHECK(static_cast<double>(total(3)) / 1e9 == doctest::Approx(1.875));
}

TEST_CASE("shards round up when the world size does not divide the parameters") {
  const ModelStates s = model_states(10, 3, 4, Precision::bf16_mixed, GradDtype::bf16);
  CHECK(s.shard_elements == 3);
  CHECK(s.total() == 16 * 3);
}

TEST_CASE("fp32 training is 16 bytes/param without a master copy - fp32 grads make mixed 18") {
  const ModelStates fp32 = model_states(1000, 0, 1, Precision::fp32, GradDtype::fp32);
  CHECK(fp32.master_bytes == 0);
  CHECK(fp32.total() == 16 * 1000);
  const ModelStates megatron = model_states(1000, 0, 1, Precision::bf16_mixed, GradDtype::fp32);
  CHECK(megatron.total() == 18 * 1000);
}

namespace {

// A GPT layer as Korthikanti et al. assume it: 16-bit activations, dropout (1-byte masks),
// materialised attention, MLP width 4h.
struct GptSetup {
  ModelSpec model;
  RunSettings run;
};

GptSetup korthikanti_gpt(std::int64_t s, std::int64_t b, std::int64_t h, std::int64_t a) {
  GptSetup g;
  ModelSpec& m = g.model;
  m.arch = Arch::gpt2;
  m.vocab_size = 51200;
  m.hidden_size = h;
  m.num_layers = 4;
  m.num_heads = a;
  m.num_kv_heads = a;
  m.head_dim = h / a;
  m.intermediate_size = 4 * h;
  m.max_position_embeddings = s;
  m.qkv_bias = m.o_bias = m.mlp_bias = true;
  m.dropout = 0.1;
  g.run.data.packing_length = s;
  g.run.train.micro_batch_size = b;
  g.run.train.precision = Precision::bf16_mixed;
  g.run.train.attention = AttentionImpl::naive;
  g.run.hardware.memory = 80ull << 30;
  g.run.hardware.peak_tflops = 312;
  g.run.hardware.interconnect_gbps = 100;
  g.run.hardware.runtime_overhead = 0;
  g.run.hardware.allocator_reserve = 0;
  return g;
}

}  // namespace

TEST_CASE("Korthikanti: a layer stores sbh(34 + 5as/h) 34sbh with selective recompute 2sbh with full") {
  const std::int64_t s = 2048, b = 4, h = 1024, a = 16;
  GptSetup g = korthikanti_gpt(s, b, h, a);
  // The paper leaves out the two LayerNorms' fp32 statistics (mean and rstd): 16 bytes/token.
  const std::int64_t stats = 2 * 2 * 4 * s * b;
  const std::int64_t sbh = s * b * h;

  const Plan none = make_plan(g.model, g.run);
  const LayerPlan& l = none.layers.at(0);
  CHECK(l.kept_bytes == sbh * 34 + 5 * a * s * s * b + stats);

  g.run.checkpointing.policy = CheckpointPolicy::selective;
  const Plan selective = make_plan(g.model, g.run);
  CHECK(selective.layers.at(0).kept_bytes == 34 * sbh + stats);

  g.run.checkpointing.policy = CheckpointPolicy::full;
  const Plan full = make_plan(g.model, g.run);
  CHECK(full.layers.at(0).kept_bytes == 2 * sbh);

  // With flash attention the 5as^2b term disappears; only the fp32 logsumexp (4asb) stays.
  g.run.checkpointing.policy = CheckpointPolicy::none;
  g.run.train.attention = AttentionImpl::flash;
  const Plan flash = make_plan(g.model, g.run);
  CHECK(flash.layers.at(0).kept_bytes == 34 * sbh + 4 * a * s * b + stats);
}

TEST_CASE("fp32 logits dominate the output layer: 4sbv bytes") {
  GptSetup g = korthikanti_gpt(1024, 2, 512, 8);
  const Plan p = make_plan(g.model, g.run);
  std::int64_t logits = 0;
  for (const auto& slot : p.head.slots)
    if (slot.name == "logits") logits = slot.bytes;
  CHECK(logits == 4 * 1024 * 2 * 51200);
}

TEST_CASE("llama layer with flash attention GQA and SwiGLU") {
  // Per token, 16-bit: input, norm out, q (a*d), k and v (g*d each), attention out, residual,
  // norm out, gate, up, act (I each); fp32: two rstd, logsumexp per head.
  Recipe r = load_recipe(source_path("recipes/models/llama3-8b.yaml"), {"data.packing_length=4096"});
  const Plan p = make_plan(r.model, r);
  const std::int64_t T = 4096, h = 4096, ad = 32 * 128, gd = 8 * 128, I = 14336;
  const std::int64_t expected = T * 2 * (h + h + ad + 2 * gd + ad + h + h + 3 * I) + T * 4 * (2 + 32);
  CHECK(p.layers.at(0).kept_bytes == expected);
}

TEST_CASE("MoE layers hold top_k routed copies of each token") {
  Recipe r = load_recipe(source_path("recipes/models/moonlight-16b-a3b.yaml"), {"data.packing_length=1024"});
  const Plan dropless = make_plan(r.model, r);
  CHECK(dropless.profiles.size() == 2);  // the dense first layer and the MoE layers
  const BlockProfile& moe = dropless.profiles[dropless.layers.at(1).profile];
  CHECK(moe.kind == "decoder (MoE)");
  std::int64_t dispatched = 0;
  for (const auto& s : moe.slots)
    if (s.name == "moe.dispatched") dispatched = s.bytes;
  CHECK(dispatched == 1024 * 6 * 2048 * 2);

  r.model.moe.capacity_factor = 1.25;
  const Plan capped = make_plan(r.model, r);
  for (const auto& s : capped.profiles[capped.layers.at(1).profile].slots)
    if (s.name == "moe.dispatched") CHECK(s.bytes == 64 * 120 * 2048 * 2);  // ceil(1.25*1024*6/64) = 120
}

TEST_CASE("peak breakdown sums to the peak - model states match the formula") {
  Recipe r = load_recipe(source_path("recipes/llama2/7b_pretrain_8gpu.yaml"));
  const Plan p = make_plan(r.model, r);
  std::int64_t sum = 0;
  for (const auto& part : p.peak_parts) sum += part.bytes;
  CHECK(sum == p.peak_bytes);
  const ModelStates s = model_states(p.params.total, 1, 8, Precision::bf16_mixed, GradDtype::bf16);
  CHECK(p.model_states_bytes() == s.total());
}

TEST_CASE("compute: 6 N T plus attention recompute adds one forward per recomputed layer") {
  Recipe r = load_recipe(source_path("recipes/models/llama2-7b.yaml"),
                         {"data.packing_length=4096", "train.micro_batch_size=1", "train.causal=true"});
  const Plan none = make_plan(r.model, r);
  const double T = 4096, N = static_cast<double>(none.params.total - none.params.embedding);
  // Causal flash attention: 4*s^2*a*d/2 per layer forward.
  const double attention = 32 * 4.0 * T * T * 4096 / 2;
  CHECK(none.compute.forward_flops == doctest::Approx(2 * N * T + attention).epsilon(0.01));
  CHECK(none.compute.recompute_flops == 0);
  r.checkpointing.policy = CheckpointPolicy::full;
  const Plan full = make_plan(r.model, r);
  double layers_forward = 0;
  for (const auto& l : full.layers) layers_forward += full.profiles[l.profile].forward_flops;
  CHECK(full.compute.recompute_flops == doctest::Approx(layers_forward));
}
