#include "train/trainer.hpp"

#include <fmt/format.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/table.hpp"
#include "core/text.hpp"
#include "core/units.hpp"
#include "data/batch.hpp"
#include "model/checkpoint_store.hpp"
#include "model/model.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "optim/adamw.hpp"
#include "optim/zero.hpp"
#include "dist/communicator.hpp"
#include "tools/recipe_plan.hpp"
#include "train/run_checkpoint.hpp"
#include "train/run_support.hpp"
#include "train/train_data.hpp"

namespace llmlab {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = RunClock;




// Model FLOPs of a batch (PaLM's MFU convention, recomputation excluded): 6 per parameter
// used in a matrix product per token (the token embedding is a lookup; a tied one is used
// again as the output projection), plus attention: forward 4 * D * Hq per (query, key) pair
// that is computed (causal: len(len+1)/2 per document), backward twice that.
double model_flops(const ModelSpec& m, const Plan& plan, const Batch& b, bool causal) {
  double matmul_params = static_cast<double>(plan.params.total - plan.params.embedding);
  if (m.tie_embeddings) matmul_params += static_cast<double>(m.vocab_size * m.hidden_size);
  double pairs = 0;
  for (std::size_t d = 0; d + 1 < b.cu_seqlens.size(); ++d) {
    const double len = b.cu_seqlens[d + 1] - b.cu_seqlens[d];
    pairs += causal ? len * (len + 1) / 2 : len * len;
  }
  const double attention = 3.0 * 4.0 * static_cast<double>(m.head_dim * m.num_heads * m.num_layers) * pairs;
  return 6.0 * matmul_params * static_cast<double>(b.tokens.size()) + attention;
}


// What must not change across a resume for it to continue the same run: the model, the data
// order and the global batch. (Steps, logging, output and exit settings may, and so may the
// world size and ZeRO stage when accumulation keeps the global batch.)
std::string recipe_hash(const Recipe& r, const json& model, std::int64_t world) {
  json j{{"model", model}, {"shards", r.data.shards}, {"packing_length", r.data.packing_length},
         {"micro_batch_size", r.train.micro_batch_size},
         {"global_micro_batches", r.train.gradient_accumulation_steps * world}, {"seed", r.train.seed}};
  const std::string text = j.dump();
  return fmt::format("{:016x}", XXH64(text.data(), text.size(), 0));
}



}  // namespace

void check_trainable(const Recipe& r) {
  const ModelSpec& m = r.model;
  auto refuse = [&](const std::string& key, const std::string& what) {
    throw InputError(r.locate(key), key, what);
  };
  if (m.is_moe()) refuse("model.moe.num_experts", "train does not implement mixture-of-experts layers yet");
  if (m.is_mla()) refuse("model.mla.kv_lora_rank", "train does not implement multi-head latent attention yet");
  if (m.has_vision()) refuse("model.vision.num_layers", "train does not implement vision encoders yet");
  if (m.mtp_depth > 0) refuse("model.mtp_depth", "train does not implement multi-token prediction yet");
  if (m.qk_norm) refuse("model.qk_norm", "train does not implement q/k norms yet");
  if (m.dropout > 0) refuse("model.dropout", "train does not implement dropout (modern pretraining uses 0)");
  if (m.arch == Arch::llama && (m.qkv_bias || m.o_bias || m.mlp_bias))
    refuse("model.qkv_bias", "train's llama layers have no biases");
  if (m.arch == Arch::gpt2 && m.num_kv_heads != m.num_heads) refuse("model.num_kv_heads", "gpt2 has no grouped-query attention");
  if (m.head_dim % 2 != 0 && m.arch == Arch::llama) refuse("model.head_dim", "RoPE needs an even head dimension");
  if (r.hardware.device != Device::cpu)
    refuse("hardware.device", "train runs on the CPU in this build (set hardware.device: cpu); the CUDA backend is not written yet");
  if (r.train.precision != Precision::fp32)
    refuse("train.precision", "the CPU backend trains in fp32: set train.precision: fp32");
  if (m.arch == Arch::gpt2 && r.data.packing_length > m.max_position_embeddings)
    refuse("data.packing_length", fmt::format("is {} but gpt2's learned positions stop at model.max_position_embeddings = {}",
                                              r.data.packing_length, m.max_position_embeddings));
}

namespace {

// What every rank must agree on before the first collective: the resolved recipe and the data.

std::uint64_t data_hash(const ShardSet& set) {
  std::string text = fmt::format("{} rows {} tokens", set.rows, set.tokens);
  for (const auto& f : set.files) {
    std::error_code ec;
    text += fmt::format(";{}:{}", fs::path(f).filename().string(), fs::file_size(f, ec));
  }
  return text_hash(text);
}


}  // namespace

namespace {

// The training loop of one rank (of one or many): data parallel over `comm`, model states
// sharded as run.zero.stage says. Rank 0 reports (progress, metrics, JSON, summary); every
// rank computes the same global numbers.
int train_ranks(const Recipe& recipe, const RunSettings& run, const Plan& plan, const ShardSet& train_set,
                const ShardSet& eval_set, CheckpointStore& store,
                const std::optional<std::pair<std::int64_t, std::string>>& latest, Communicator& comm,
                const TrainOptions& o, std::ostream& out, std::ostream& err) {
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
  BatchReader reader(train_set.files, run.train.micro_batch_size, run.train.seed);

  RunState state;
  state.recipe_hash = recipe_hash(recipe, model_config(spec), W);
  Progress progress(lead && !o.json && !o.quiet, err);
  if (o.resume) {
    const RunState saved = load_checkpoint_files(latest->second, weights, optimizer, backend);
    if (saved.recipe_hash != state.recipe_hash && lead)
      err << "train: warning: the recipe differs from the one that wrote " << latest->second << "\n";
    state.step = saved.step;
    state.tokens_seen = saved.tokens_seen;
    state.cursor = saved.cursor;
    reader.seek(saved.cursor);
    progress.message(fmt::format("train: resumed from {} (step {})", latest->second, saved.step));
  } else {
    weights.initialize(run.train.seed);
    if (!o.init_from.empty()) {
      const auto extra = load_weights(o.init_from, weights, backend);
      progress.message(fmt::format("train: initialised from {}{}", o.init_from,
                                   extra.empty() ? "" : fmt::format(" ({} tensors in the file unused)", extra.size())));
    }
  }
  if (state.step >= run.train.steps)
    throw InputError(recipe.locate("train.steps"), "train.steps",
                     fmt::format("is {} but the checkpoint already completed step {}: raise train.steps to train further",
                                 run.train.steps, state.step));
  if (W > 1)
    progress.message(fmt::format("train: {} ranks ({}), ZeRO stage {}, global batch {} x {} rows", W, o.launch.launcher,
                                 stage, W * run.train.gradient_accumulation_steps, run.train.micro_batch_size));

  std::ofstream metrics;
  if (lead) {
    fs::create_directories(run.output.dir);
    const std::string metrics_path = (fs::path(run.output.dir) / "metrics.jsonl").string();
    metrics.open(metrics_path, o.resume ? std::ios::app : std::ios::trunc);
    if (!metrics) throw Error(fmt::format("cannot write {}", metrics_path));
  }

  // Evaluation batches are dealt round-robin; every rank runs the same number of passes (ZeRO-3
  // gathers are collective), a rank short of batches repeating one with weight 0.
  auto evaluate = [&]() -> std::optional<double> {
    if (eval_set.files.empty()) return std::nullopt;
    BatchReader eval_reader(eval_set.files, run.train.micro_batch_size, 0);
    const std::int64_t batches = std::max<std::int64_t>(1, std::min<std::int64_t>(
        run.eval.batches, static_cast<std::int64_t>(eval_reader.rows_per_epoch()) / run.train.micro_batch_size));
    double sums[2] = {0, 0};  // loss, tokens
    std::optional<Batch> first;
    for (std::int64_t i = 0; i < (batches + W - 1) / W * W; ++i) {
      if (i < batches) {
        Batch b = eval_reader.next();
        if (!first) first = b;
        if (i % W != rank) continue;
        sums[0] += model.forward_loss(b);
        sums[1] += static_cast<double>(b.loss_tokens);
      } else if (i % W == rank) {
        model.forward_loss(*first);
      }
    }
    comm.all_reduce_sum_f64(sums, 2);
    return sums[1] > 0 ? sums[0] / sums[1] : 0.0;
  };
  auto save = [&](std::int64_t step) {
    return save_run_checkpoint(store, step, state, weights, zero, optimizer, backend, spec, comm);
  };

  const InterruptFlag interrupt;

  const double peak_flops = run.hardware.peak_tflops * 1e12;
  std::vector<double> step_seconds, tokens_per_second, mfus, traffic;
  double last_loss = 0, last_eval = std::nan("");
  std::int64_t skipped = 0;
  const Clock::time_point run_start = Clock::now();
  const std::int64_t first_step = state.step + 1;
  const std::int64_t micro_batches = W * run.train.gradient_accumulation_steps;  // per step, all ranks
  bool interrupted = false, exited = false;
  for (std::int64_t step = first_step; step <= run.train.steps; ++step) {
    const Clock::time_point t0 = Clock::now();
    const std::int64_t traffic0 = zero.traffic_bytes();
    // Every rank reads the step's whole global batch in the same order and keeps micro-batches
    // rank, rank + W, ...: the data split is deterministic, the cursor the same everywhere,
    // and the global token count known without communication.
    std::vector<Batch> batches;
    std::int64_t loss_tokens = 0, tokens = 0;
    double flops = 0;
    for (std::int64_t k = 0; k < micro_batches; ++k) {
      Batch b = reader.next();
      loss_tokens += b.loss_tokens;
      tokens += static_cast<std::int64_t>(b.tokens.size());
      flops += model_flops(spec, plan, b, run.train.causal);
      if (k % W == rank) batches.push_back(std::move(b));
    }
    // Per-token normalisation over the whole global step: every counted token weighs the
    // same, however the documents fall into rows, micro-batches and ranks.
    const float scale = loss_tokens > 0 ? static_cast<float>(1.0 / static_cast<double>(loss_tokens)) : 0.0f;
    double loss_sum = 0;
    for (std::size_t k = 0; k < batches.size(); ++k)
      loss_sum += model.forward_backward(batches[k], scale, k + 1 == batches.size());
    zero.finish_gradients();  // before any other collective: reductions hold the scratch
    comm.all_reduce_sum_f64(&loss_sum, 1);
    const double loss = loss_tokens > 0 ? loss_sum / static_cast<double>(loss_tokens) : 0.0;
    const double lr = learning_rate(run.optim, step, run.train.steps);
    const UpdateStats update = stack.update(step, lr, std::isfinite(loss));
    if (!update.finite) {
      const std::string what = fmt::format("step {}: the {} is {}", step, std::isfinite(loss) ? "gradient norm" : "loss",
                                           std::isfinite(loss) ? "not finite" : std::isnan(loss) ? "nan" : "inf");
      if (run.train.on_nonfinite == NonFinitePolicy::stop)
        throw Error(what + ": stopping (train.on_nonfinite=skip skips such steps; lowering optim.lr often helps)");
      ++skipped;
      if (lead) err << "train: warning: " << what << ": update skipped\n";
    }
    state.step = step;
    state.cursor = reader.cursor();
    state.tokens_seen += static_cast<std::uint64_t>(tokens);
    last_loss = loss;

    const double dt = seconds_since(t0);
    step_seconds.push_back(dt);
    tokens_per_second.push_back(static_cast<double>(tokens) / dt);
    mfus.push_back(peak_flops > 0 ? flops / W / dt / peak_flops : 0.0);
    traffic.push_back(static_cast<double>(zero.traffic_bytes() - traffic0));
    const double eta = median(step_seconds) * static_cast<double>(run.train.steps - step);

    std::optional<double> eval_loss;
    if (run.eval.every > 0 && step % run.eval.every == 0 && step != run.train.steps) eval_loss = evaluate();
    if (step == run.train.steps) eval_loss = evaluate();
    if (eval_loss) last_eval = *eval_loss;

    json record{{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", update.grad_norm},
                {"tokens", tokens}, {"loss_tokens", loss_tokens}, {"tokens_per_second", tokens_per_second.back()},
                {"mfu", mfus.back()}, {"step_seconds", dt}, {"tokens_seen", state.tokens_seen}};
    if (W > 1) record["comm_bytes"] = traffic.back();
    if (eval_loss) record["eval_loss"] = *eval_loss;
    if (!update.finite) record["skipped"] = true;
    const bool log_now = step % run.output.log_every == 0 || step == run.train.steps || eval_loss;
    if (log_now && lead) {
      metrics << record.dump() << "\n" << std::flush;
      if (o.json) out << record.dump() << "\n" << std::flush;
    }
    if (log_now || progress.live())
      progress.line(fmt::format("step {:>{}}/{} | loss {:.4f} | lr {:.2e} | {} tok/s | MFU {:.1f}% | ETA {}", step,
                                std::to_string(run.train.steps).size(), run.train.steps, loss, lr,
                                format_short_count(tokens_per_second.back()), 100 * mfus.back(),
                                eta > 0 ? format_seconds(eta) : std::string("done")));
    if (log_now) {
      if (eval_loss) progress.message(fmt::format("step {}: eval loss {:.4f}", step, *eval_loss));
    }
    // A Ctrl-C reaches the ranks at different moments: they stop together, at the first step
    // end where any of them saw it.
    if (interrupt.raised_on_any(comm)) {
      const std::string where = save(step);
      progress.message(fmt::format("train: interrupted: checkpoint saved to {}; continue with --resume", where));
      if (!o.json && lead) err << fmt::format("train: interrupted at step {}; checkpoint saved to {}\n", step, where);
      interrupted = true;
      break;
    }
    if (run.train.exit_interval > 0 && step % run.train.exit_interval == 0 && step != run.train.steps) {
      const std::string where = save(step);
      progress.message(fmt::format("train: exit interval reached at step {}: checkpoint saved to {}", step, where));
      exited = true;
      break;
    }
    if (run.output.checkpoints &&
        (step == run.train.steps || (run.output.save_every > 0 && step % run.output.save_every == 0)))
      save(step);
  }
  progress.finish();

  // Medians skip the first step (allocator warm-up, oneDNN kernel generation) when there are more.
  const auto steady = steady_median;
  // Each rank's measured peak, for the per-rank comparison with the plan.
  std::vector<double> peaks(static_cast<std::size_t>(W), 0.0);
  peaks[static_cast<std::size_t>(rank)] = static_cast<double>(mem.peak_bytes());
  comm.all_reduce_sum_f64(peaks.data(), W);
  if (!lead) return interrupted ? 130 : 0;

  json summary;
  summary["steps"] = state.step;
  summary["first_step"] = first_step;
  summary["loss"] = last_loss;
  if (!std::isnan(last_eval)) summary["eval_loss"] = last_eval;
  summary["tokens_seen"] = state.tokens_seen;
  summary["tokens_per_second"] = steady(tokens_per_second);
  summary["step_seconds"] = steady(step_seconds);
  summary["mfu"] = steady(mfus);
  summary["peak_tflops"] = run.hardware.peak_tflops;
  summary["seconds"] = seconds_since(run_start);
  summary["skipped_steps"] = skipped;
  summary["interrupted"] = interrupted;
  summary["exited_at_interval"] = exited;
  summary["checkpoint"] = store.latest() ? store.latest()->second : "";
  summary["world_size"] = W;
  summary["zero_stage"] = stage;
  summary["comm_bytes_per_step"] = steady(traffic);
  summary["parameters"] = weights.numel();
  summary["memory"] = memory_json(plan, mem);
  summary["memory"]["per_rank_measured_peak_bytes"] = peaks;
  metrics << json{{"summary", summary}}.dump() << "\n" << std::flush;
  if (o.json) {
    out << json{{"summary", summary}}.dump() << "\n";
  } else {
    Table t;
    t.column("run", Table::Align::left).column("value", Table::Align::left);
    t.row({"steps", fmt::format("{} ({} tokens)", state.step, format_count(state.tokens_seen))});
    t.row({"final loss", fmt::format("{:.4f}", last_loss)});
    if (!std::isnan(last_eval)) t.row({"eval loss", fmt::format("{:.4f}", last_eval)});
    t.row({"throughput", fmt::format("{} tokens/s, {:.2f} s/step (median)", format_short_count(steady(tokens_per_second)),
                                     steady(step_seconds))});
    t.row({"MFU", fmt::format("{:.1f}% of {} TFLOP/s", 100 * steady(mfus), run.hardware.peak_tflops)});
    if (W > 1)
      t.row({"ranks", fmt::format("{}, ZeRO stage {}, {} received per rank per step", W, stage,
                                  format_bytes(steady(traffic)))});
    t.row({"time", format_seconds(seconds_since(run_start))});
    t.row({"checkpoint", run.output.checkpoints ? summary["checkpoint"].get<std::string>() : "none (output.checkpoints: false)"});
    out << "\n";
    t.print(out);
    out << "\n";
    print_memory(plan, mem, out);
    if (W > 1) {
      const double lo = *std::min_element(peaks.begin(), peaks.end()), hi = *std::max_element(peaks.begin(), peaks.end());
      out << fmt::format("per-rank measured peaks: {} to {} (rank 0 shown above)\n", format_bytes(lo), format_bytes(hi));
    }
  }
  return interrupted ? 130 : 0;
}

}  // namespace

int run_training(const Recipe& recipe, const TrainOptions& o, std::ostream& out, std::ostream& err) {
  check_trainable(recipe);
  if (recipe.data.shards.empty())
    throw InputError(recipe.locate("data.shards"), "data.shards",
                     "no training data: set data.shards to a pack-data output directory");
  RunSettings run = resolved_run_settings(recipe, 0);
  run.dist.world_size = o.launch.world_size;
  const Plan plan = make_plan(recipe.model, run);

  const ShardSet train_set = open_shards(recipe, run.data.shards, "data.shards");
  check_shards_fit(recipe, train_set, "data.shards");
  ShardSet eval_set;
  if (!run.eval.shards.empty()) {
    eval_set = open_shards(recipe, run.eval.shards, "eval.shards");
    check_shards_fit(recipe, eval_set, "eval.shards");
  }

  CheckpointStore store((fs::path(run.output.dir) / "checkpoints").string(), static_cast<int>(run.output.keep_last));
  const auto latest = check_run_store(recipe, store, o.resume, "step");

  const std::unique_ptr<Communicator> comm = make_communicator(o.launch, run.dist.timeout_seconds);
  // Every rank fails these alike (and prints why), so they need no abort.
  comm->check_same("resolved recipe", text_hash(resolved_yaml(recipe) + (o.resume ? "resume" : "") + o.init_from));
  comm->check_same("training data (data.shards)", data_hash(train_set));
  return on_all_ranks_or_abort(*comm, "train", [&] {
    return train_ranks(recipe, run, plan, train_set, eval_set, store, latest, *comm, o, out, err);
  });
}


}  // namespace llmlab
