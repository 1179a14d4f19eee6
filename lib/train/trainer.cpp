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
#include "tools/recipe_plan.hpp"
#include "train/run_checkpoint.hpp"
#include "train/train_data.hpp"

namespace llmlab {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int) {
  g_interrupted = 1;
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}


double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

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

json model_config(const ModelSpec& m) {
  return json{{"arch", arch_name(m.arch)},         {"vocab_size", m.vocab_size},
              {"hidden_size", m.hidden_size},      {"num_layers", m.num_layers},
              {"num_heads", m.num_heads},          {"num_kv_heads", m.num_kv_heads},
              {"head_dim", m.head_dim},            {"intermediate_size", m.intermediate_size},
              {"max_position_embeddings", m.max_position_embeddings},
              {"tie_embeddings", m.tie_embeddings}, {"norm_eps", m.norm_eps},
              {"rope_theta", m.rope_theta}};
}

// What must not change across a resume for it to continue the same run: the model, the data
// order and the batch. (Steps, logging, output and exit settings may.)
std::string recipe_hash(const Recipe& r, const json& model) {
  json j{{"model", model}, {"shards", r.data.shards}, {"packing_length", r.data.packing_length},
         {"micro_batch_size", r.train.micro_batch_size}, {"gradient_accumulation_steps", r.train.gradient_accumulation_steps},
         {"seed", r.train.seed}};
  const std::string text = j.dump();
  return fmt::format("{:016x}", XXH64(text.data(), text.size(), 0));
}

// Per-category measured vs planned bytes, and the totals.
json memory_json(const Plan& plan, const TrackedMemory& mem) {
  json j;
  j["measured_peak_bytes"] = mem.peak_bytes();
  j["planned_peak_bytes"] = plan.peak_bytes;
  j["relative_error"] = plan.peak_bytes ? static_cast<double>(mem.peak_bytes() - plan.peak_bytes) / static_cast<double>(plan.peak_bytes) : 0.0;
  json cats = json::object();
  for (std::size_t c = 0; c < kCategories; ++c) {
    const auto cat = static_cast<Category>(c);
    if (plan.at_peak[c] == 0 && mem.at_peak()[c] == 0) continue;
    cats[category_name(cat)] = {{"measured", mem.at_peak()[c]}, {"planned", plan.at_peak[c]}};
  }
  j["categories"] = cats;
  j["planned_peak_phase"] = plan.peak_phase;
  return j;
}

void print_memory(const Plan& plan, const TrackedMemory& mem, std::ostream& out) {
  Table t;
  t.column("memory at peak", Table::Align::left).column("measured").column("planned").column("difference");
  auto diff = [](std::int64_t a, std::int64_t b) {
    return b ? fmt::format("{:+.2f}%", 100.0 * static_cast<double>(a - b) / static_cast<double>(b)) : std::string("");
  };
  for (std::size_t c = 0; c < kCategories; ++c) {
    if (plan.at_peak[c] == 0 && mem.at_peak()[c] == 0) continue;
    t.row({category_name(static_cast<Category>(c)), format_bytes(static_cast<double>(mem.at_peak()[c])),
           format_bytes(static_cast<double>(plan.at_peak[c])), diff(mem.at_peak()[c], plan.at_peak[c])});
  }
  t.rule();
  t.row({"total", format_bytes(static_cast<double>(mem.peak_bytes())), format_bytes(static_cast<double>(plan.peak_bytes)),
         diff(mem.peak_bytes(), plan.peak_bytes)});
  t.print(out);
  out << fmt::format("planned peak: {}\n", plan.peak_phase);
}

class Progress {
 public:
  Progress(const TrainOptions& o, std::ostream& err, std::int64_t total)
      : show_(!o.json && !o.quiet), tty_(::isatty(2) != 0), err_(err), total_(total) {}
  void step(std::int64_t step, double loss, double lr, double tokens_per_second, double mfu, double eta) {
    if (!show_) return;
    const std::string line =
        fmt::format("step {:>{}}/{} | loss {:.4f} | lr {:.2e} | {} tok/s | MFU {:.1f}% | ETA {}", step,
                    std::to_string(total_).size(), total_, loss, lr, format_short_count(tokens_per_second), 100 * mfu,
                    eta > 0 ? format_seconds(eta) : std::string("done"));
    err_ << line << (tty_ ? "    \r" : "\n") << std::flush;
    open_ = tty_;
  }
  bool live() const { return show_ && tty_; }  // a terminal line redrawn every step
  void message(const std::string& text) {
    if (!show_) return;
    if (open_) err_ << "\n";
    open_ = false;
    err_ << text << "\n";
  }
  void finish() {
    if (open_) err_ << "\n";
    open_ = false;
  }

 private:
  bool show_, tty_;
  std::ostream& err_;
  std::int64_t total_;
  bool open_ = false;
};

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
  if (r.dist.world_size != 1) refuse("dist.world_size", "train runs one process in this build");
  if (r.zero.stage != 0) refuse("zero.stage", "ZeRO needs more than one process; use zero.stage: 0");
  if (m.arch == Arch::gpt2 && r.data.packing_length > m.max_position_embeddings)
    refuse("data.packing_length", fmt::format("is {} but gpt2's learned positions stop at model.max_position_embeddings = {}",
                                              r.data.packing_length, m.max_position_embeddings));
  if (r.data.shards.empty())
    refuse("data.shards", "no training data: set data.shards to a pack-data output directory");
}

int run_training(const Recipe& recipe, const TrainOptions& o, std::ostream& out, std::ostream& err) {
  check_trainable(recipe);
  const RunSettings run = resolved_run_settings(recipe, 0);
  const Plan plan = make_plan(recipe.model, run);
  const ModelSpec& spec = recipe.model;

  const ShardSet train_set = open_shards(recipe, run.data.shards, "data.shards");
  check_shards_fit(recipe, train_set, "data.shards");
  ShardSet eval_set;
  if (!run.eval.shards.empty()) {
    eval_set = open_shards(recipe, run.eval.shards, "eval.shards");
    check_shards_fit(recipe, eval_set, "eval.shards");
  }

  CheckpointStore store((fs::path(run.output.dir) / "checkpoints").string(), static_cast<int>(run.output.keep_last));
  store.check_writable();
  const auto latest = store.latest();
  if (o.resume && !latest)
    throw InputError(recipe.locate("output.dir"), "output.dir",
                     fmt::format("--resume: no checkpoint in {}/checkpoints to resume from", run.output.dir));
  if (!o.resume && latest)
    throw InputError(recipe.locate("output.dir"), "output.dir",
                     fmt::format("{} already holds checkpoints (latest: step {}): pass --resume to continue that run, "
                                 "or choose another output.dir",
                                 run.output.dir, latest->first));

  CpuBackend backend(static_cast<int>(run.train.threads));
  TrackedMemory mem(backend);
  Model model(plan, backend, mem);
  AdamW optimizer(model.weights(), run.optim, backend, mem);
  backend.zero(model.weights().grads(), model.weights().numel());
  BatchReader reader(train_set.files, run.train.micro_batch_size, run.train.seed);

  RunState state;
  state.recipe_hash = recipe_hash(recipe, model_config(spec));
  Progress progress(o, err, run.train.steps);
  if (o.resume) {
    const RunState saved = load_checkpoint_files(latest->second, model.weights(), optimizer, backend);
    if (saved.recipe_hash != state.recipe_hash)
      err << "train: warning: the recipe differs from the one that wrote " << latest->second << "\n";
    state.step = saved.step;
    state.tokens_seen = saved.tokens_seen;
    state.cursor = saved.cursor;
    reader.seek(saved.cursor);
    progress.message(fmt::format("train: resumed from {} (step {})", latest->second, saved.step));
  } else {
    model.weights().initialize(run.train.seed);
    if (!o.init_from.empty()) {
      const auto extra = load_weights(o.init_from, model.weights(), backend);
      progress.message(fmt::format("train: initialised from {}{}", o.init_from,
                                   extra.empty() ? "" : fmt::format(" ({} tensors in the file unused)", extra.size())));
    }
  }
  if (state.step >= run.train.steps)
    throw InputError(recipe.locate("train.steps"), "train.steps",
                     fmt::format("is {} but the checkpoint already completed step {}: raise train.steps to train further",
                                 run.train.steps, state.step));

  fs::create_directories(run.output.dir);
  const std::string metrics_path = (fs::path(run.output.dir) / "metrics.jsonl").string();
  std::ofstream metrics(metrics_path, o.resume ? std::ios::app : std::ios::trunc);
  if (!metrics) throw Error(fmt::format("cannot write {}", metrics_path));

  auto evaluate = [&]() -> std::optional<double> {
    if (eval_set.files.empty()) return std::nullopt;
    BatchReader eval_reader(eval_set.files, run.train.micro_batch_size, 0);
    double sum = 0, tokens = 0;
    const std::int64_t batches = std::min<std::int64_t>(
        run.eval.batches, static_cast<std::int64_t>(eval_reader.rows_per_epoch()) / run.train.micro_batch_size);
    for (std::int64_t i = 0; i < std::max<std::int64_t>(1, batches); ++i) {
      const Batch b = eval_reader.next();
      sum += model.forward_loss(b);
      tokens += static_cast<double>(b.loss_tokens);
    }
    return tokens > 0 ? sum / tokens : 0.0;
  };
  auto save = [&](std::int64_t step) {
    const std::string tmp = store.begin(step);
    try {
      save_checkpoint_files(tmp, model.weights(), optimizer, backend, state, spec, model_config(spec));
      return store.commit(tmp, step);
    } catch (...) {
      store.abort(tmp);
      throw;
    }
  };

  g_interrupted = 0;
  auto previous_handler = std::signal(SIGINT, on_sigint);
  struct RestoreSignal {
    void (*handler)(int);
    ~RestoreSignal() { std::signal(SIGINT, handler); }
  } restore{previous_handler};

  const double peak_flops = run.hardware.peak_tflops * 1e12;
  std::vector<double> step_seconds, tokens_per_second, mfus;
  double last_loss = 0, last_eval = std::nan("");
  std::int64_t skipped = 0;
  const Clock::time_point run_start = Clock::now();
  const std::int64_t first_step = state.step + 1;
  bool interrupted = false, exited = false;
  for (std::int64_t step = first_step; step <= run.train.steps; ++step) {
    const Clock::time_point t0 = Clock::now();
    std::vector<Batch> batches;
    std::int64_t loss_tokens = 0, tokens = 0;
    double flops = 0;
    for (std::int64_t k = 0; k < run.train.gradient_accumulation_steps; ++k) {
      batches.push_back(reader.next());
      loss_tokens += batches.back().loss_tokens;
      tokens += static_cast<std::int64_t>(batches.back().tokens.size());
      flops += model_flops(spec, plan, batches.back(), run.train.causal);
    }
    // Per-token normalisation over the whole step: every counted token weighs the same,
    // however the documents fall into rows and micro-batches.
    const float scale = loss_tokens > 0 ? static_cast<float>(1.0 / static_cast<double>(loss_tokens)) : 0.0f;
    double loss_sum = 0;
    for (const Batch& b : batches) loss_sum += model.forward_backward(b, scale);
    const double loss = loss_tokens > 0 ? loss_sum / static_cast<double>(loss_tokens) : 0.0;
    const double lr = learning_rate(run.optim, step, run.train.steps);
    UpdateStats update;
    update.finite = std::isfinite(loss);
    if (update.finite) update = optimizer.update(step, lr);
    backend.zero(model.weights().grads(), model.weights().numel());
    if (!update.finite) {
      const std::string what = fmt::format("step {}: the {} is {}", step, std::isfinite(loss) ? "gradient norm" : "loss",
                                           std::isfinite(loss) ? "not finite" : std::isnan(loss) ? "nan" : "inf");
      if (run.train.on_nonfinite == NonFinitePolicy::stop)
        throw Error(what + ": stopping (train.on_nonfinite=skip skips such steps; lowering optim.lr often helps)");
      ++skipped;
      err << "train: warning: " << what << ": update skipped\n";
    }
    state.step = step;
    state.cursor = reader.cursor();
    state.tokens_seen += static_cast<std::uint64_t>(tokens);
    last_loss = loss;

    const double dt = seconds_since(t0);
    step_seconds.push_back(dt);
    tokens_per_second.push_back(static_cast<double>(tokens) / dt);
    mfus.push_back(peak_flops > 0 ? flops / dt / peak_flops : 0.0);
    const double eta = median(step_seconds) * static_cast<double>(run.train.steps - step);

    std::optional<double> eval_loss;
    if (run.eval.every > 0 && step % run.eval.every == 0 && step != run.train.steps) eval_loss = evaluate();
    if (step == run.train.steps) eval_loss = evaluate();
    if (eval_loss) last_eval = *eval_loss;

    json record{{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", update.grad_norm},
                {"tokens", tokens}, {"loss_tokens", loss_tokens}, {"tokens_per_second", tokens_per_second.back()},
                {"mfu", mfus.back()}, {"step_seconds", dt}, {"tokens_seen", state.tokens_seen}};
    if (eval_loss) record["eval_loss"] = *eval_loss;
    if (!update.finite) record["skipped"] = true;
    const bool log_now = step % run.output.log_every == 0 || step == run.train.steps || eval_loss;
    if (log_now) {
      metrics << record.dump() << "\n" << std::flush;
      if (o.json) out << record.dump() << "\n" << std::flush;
    }
    if (log_now || progress.live()) progress.step(step, loss, lr, tokens_per_second.back(), mfus.back(), eta);
    if (log_now) {
      if (eval_loss) progress.message(fmt::format("step {}: eval loss {:.4f}", step, *eval_loss));
    }
    if (g_interrupted) {
      const std::string where = save(step);
      progress.message(fmt::format("train: interrupted: checkpoint saved to {}; continue with --resume", where));
      if (!o.json) err << fmt::format("train: interrupted at step {}; checkpoint saved to {}\n", step, where);
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
  auto steady = [](const std::vector<double>& v) {
    return v.size() > 2 ? median(std::vector<double>(v.begin() + 1, v.end())) : median(v);
  };
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
  summary["memory"] = memory_json(plan, mem);
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
    t.row({"time", format_seconds(seconds_since(run_start))});
    t.row({"checkpoint", run.output.checkpoints ? summary["checkpoint"].get<std::string>() : "none (output.checkpoints: false)"});
    out << "\n";
    t.print(out);
    out << "\n";
    print_memory(plan, mem, out);
  }
  return interrupted ? 130 : 0;
}

}  // namespace llmlab
