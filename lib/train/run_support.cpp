#include "train/run_support.hpp"

#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/table.hpp"
#include "core/units.hpp"

namespace llmlab {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int) {
  g_interrupted = 1;
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}

}  // namespace

std::uint64_t text_hash(const std::string& text) { return XXH64(text.data(), text.size(), 0); }

double seconds_since(RunClock::time_point t) { return std::chrono::duration<double>(RunClock::now() - t).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double steady_median(const std::vector<double>& v) {
  return v.size() > 2 ? median(std::vector<double>(v.begin() + 1, v.end())) : median(v);
}

nlohmann::ordered_json model_config(const ModelSpec& m) {
  return nlohmann::ordered_json{{"arch", arch_name(m.arch)},         {"vocab_size", m.vocab_size},
                                {"hidden_size", m.hidden_size},      {"num_layers", m.num_layers},
                                {"num_heads", m.num_heads},          {"num_kv_heads", m.num_kv_heads},
                                {"head_dim", m.head_dim},            {"intermediate_size", m.intermediate_size},
                                {"max_position_embeddings", m.max_position_embeddings},
                                {"tie_embeddings", m.tie_embeddings}, {"norm_eps", m.norm_eps},
                                {"rope_theta", m.rope_theta}};
}

nlohmann::ordered_json memory_json(const Plan& plan, const TrackedMemory& mem) {
  nlohmann::ordered_json j;
  j["measured_peak_bytes"] = mem.peak_bytes();
  j["planned_peak_bytes"] = plan.peak_bytes;
  j["relative_error"] = plan.peak_bytes ? static_cast<double>(mem.peak_bytes() - plan.peak_bytes) / static_cast<double>(plan.peak_bytes) : 0.0;
  nlohmann::ordered_json cats = nlohmann::ordered_json::object();
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

TrainingStack::TrainingStack(const Plan& plan, const RunSettings& run, Communicator& comm)
    : backend(static_cast<int>(run.train.threads)),
      mem(backend),
      model(plan, backend, mem, zero_layout(static_cast<int>(run.zero.stage), comm)),
      zero(model.weights(), comm, backend, mem, run),
      optimizer(model.weights(), run.optim, backend, mem, zero.update_begin(), zero.update_end(),
                zero.optimizer_elements()) {
  model.set_param_access(&zero);
  zero.zero_grads();
}

UpdateStats TrainingStack::update(std::int64_t step, double lr, bool loss_finite) {
  UpdateStats u;
  u.grad_norm = std::sqrt(zero.grad_sum_squares());
  u.finite = loss_finite;
  if (u.finite) {
    u = optimizer.update(step, lr, u.grad_norm);
    if (u.finite) zero.after_update();
  }
  zero.zero_grads();
  return u;
}

std::optional<std::pair<std::int64_t, std::string>> check_run_store(const Recipe& recipe, const CheckpointStore& store,
                                                                    bool resume, const char* unit) {
  store.check_writable();
  const auto latest = store.latest();
  if (resume && !latest)
    throw InputError(recipe.locate("output.dir"), "output.dir",
                     fmt::format("--resume: no checkpoint in {} to resume from", store.dir()));
  if (!resume && latest)
    throw InputError(recipe.locate("output.dir"), "output.dir",
                     fmt::format("{} already holds checkpoints (latest: {} {}): pass --resume to continue that run, "
                                 "or choose another output.dir",
                                 recipe.output.dir, unit, latest->first));
  return latest;
}

std::string save_run_checkpoint(CheckpointStore& store, std::int64_t step, const RunState& state, Weights& weights,
                                ZeroEngine& zero, const AdamW& optimizer, Backend& backend, const ModelSpec& spec,
                                Communicator& comm, const std::function<void(const std::string& dir)>& extra) {
  const int W = comm.world_size(), rank = comm.rank(), stage = zero.stage();
  const bool lead = rank == 0;
  // Stage 3 keeps no whole copy of the parameters: gather one for the export (DeepSpeed's
  // stage3_gather_16bit_weights_on_model_save), outside the step's tracked memory.
  std::vector<float> gathered;
  if (weights.params_sharded()) {
    gathered.resize(static_cast<std::size_t>(weights.numel()));
    zero.gather_params(gathered.data());
  }
  const std::string tag = state.recipe_hash;
  const std::string tmp = lead ? store.begin_shared(step, tag) : store.shared_tmp(step, tag);
  comm.barrier();
  CheckpointPart part;
  part.shards = stage == 0 ? 1 : W;
  part.shard = stage == 0 ? 0 : rank;
  part.optimizer = stage > 0 || lead;
  part.model = lead;
  part.world_size = W;
  part.zero_stage = stage;
  double failed = 0;
  std::string why;
  try {
    save_checkpoint_files(tmp, weights, gathered.empty() ? weights.params() : gathered.data(), optimizer, backend, state,
                          spec, model_config(spec), part);
    if (extra) extra(tmp);
  } catch (const std::exception& e) {
    failed = 1;
    why = e.what();
  }
  comm.all_reduce_max_f64(&failed, 1);
  if (failed > 0) {
    if (lead) store.abort(tmp);
    throw Error(why.empty() ? fmt::format("checkpoint of step {}: another rank failed to write its part", step) : why);
  }
  std::string where = store.step_path(step);
  if (lead) where = store.commit(tmp, step);
  comm.barrier();
  return where;
}

Progress::Progress(bool show, std::ostream& err) : show_(show), tty_(::isatty(2) != 0), err_(err) {}

void Progress::line(const std::string& text) {
  if (!show_) return;
  err_ << text << (tty_ ? "    \r" : "\n") << std::flush;
  open_ = tty_;
}

void Progress::message(const std::string& text) {
  if (!show_) return;
  if (open_) err_ << "\n";
  open_ = false;
  err_ << text << "\n";
}

void Progress::finish() {
  if (open_) err_ << "\n";
  open_ = false;
}

InterruptFlag::InterruptFlag() {
  g_interrupted = 0;
  previous_ = std::signal(SIGINT, on_sigint);
}

InterruptFlag::~InterruptFlag() { std::signal(SIGINT, previous_); }

bool InterruptFlag::raised() const { return g_interrupted != 0; }

bool InterruptFlag::raised_on_any(Communicator& comm) const {
  double stop = raised() ? 1 : 0;
  if (comm.world_size() > 1) comm.all_reduce_max_f64(&stop, 1);
  return stop > 0;
}

}  // namespace llmlab
