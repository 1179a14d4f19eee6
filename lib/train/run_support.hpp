// What train and rl-train share around their step loops: the model's config record, memory
// reports (measured vs planned), progress lines, Ctrl-C handling, timing medians, and ending
// every rank when one fails.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <ostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/text.hpp"
#include "dist/communicator.hpp"
#include "model/checkpoint_store.hpp"
#include "model/model.hpp"
#include "ops/cpu/cpu_backend.hpp"
#include "optim/adamw.hpp"
#include "optim/zero.hpp"
#include "train/run_checkpoint.hpp"
#include "model/tracked_memory.hpp"
#include "plan/plan.hpp"
#include "recipe/recipe.hpp"
#include "spec/model_spec.hpp"

namespace llmlab {

using RunClock = std::chrono::steady_clock;
double seconds_since(RunClock::time_point t);
double median(std::vector<double> v);
// The median without the first value (allocator warm-up, kernel generation) when there are more than two.
double steady_median(const std::vector<double>& v);

// xxh64 of a text (recipe and data identities every rank must agree on).
std::uint64_t text_hash(const std::string& text);

// llmlab's own record of the architecture (checkpoints' model config and recipe hashes).
nlohmann::ordered_json model_config(const ModelSpec& m);

// Per-category measured vs planned bytes, and the totals (JSON and a table).
nlohmann::ordered_json memory_json(const Plan& plan, const TrackedMemory& mem);
void print_memory(const Plan& plan, const TrackedMemory& mem, std::ostream& out);

// One rank's training machinery, wired as train and rl-train both need it: the backend, the
// tracked memory the Plan predicts, the model (whole or sharded), the ZeRO engine it acquires
// parameters through, and AdamW over this rank's range, gradients zeroed.
struct TrainingStack {
  TrainingStack(const Plan& plan, const RunSettings& run, Communicator& comm);
  // The optimizer step after zero.finish_gradients(): the global gradient norm (collective),
  // AdamW with clipping unless the loss or the gradient is not finite (then nothing changes),
  // ZeRO's parameter all-gather, and zeroed gradients for the next step.
  UpdateStats update(std::int64_t step, double lr, bool loss_finite);
  CpuBackend backend;
  TrackedMemory mem;
  Model model;
  ZeroEngine zero;
  AdamW optimizer;
};

// Checks output.dir/checkpoints (`store`) against the run: --resume needs a checkpoint there,
// a fresh run needs none (InputError naming output.dir; `unit` is what a checkpoint counts,
// "step" or "iteration"). Returns the latest checkpoint.
std::optional<std::pair<std::int64_t, std::string>> check_run_store(const Recipe& recipe, const CheckpointStore& store,
                                                                    bool resume, const char* unit);

// Writes the checkpoint of `step` from every rank into one temporary directory that rank 0
// commits when all parts are written: rank 0 the Hugging Face model (gathered first at ZeRO-3),
// config and state, every rank its optimizer shard (stage 0: rank 0 the whole), and
// `extra(dir)` on every rank for a tool's own files. Returns the checkpoint's path. A rank that
// fails makes all of them throw, and nothing is committed.
std::string save_run_checkpoint(CheckpointStore& store, std::int64_t step, const RunState& state, Weights& weights,
                                ZeroEngine& zero, const AdamW& optimizer, Backend& backend, const ModelSpec& spec,
                                Communicator& comm, const std::function<void(const std::string& dir)>& extra = {});

// Progress on stderr: redrawn in place on a terminal, one line per update otherwise; silent
// under --json or --quiet.
class Progress {
 public:
  Progress(bool show, std::ostream& err);
  void line(const std::string& text);  // the live status line
  bool live() const { return show_ && tty_; }
  void message(const std::string& text);  // a permanent line
  void finish();

 private:
  bool show_, tty_;
  std::ostream& err_;
  bool open_ = false;
};

// While alive, Ctrl-C sets a flag instead of killing the process (a second one kills).
class InterruptFlag {
 public:
  InterruptFlag();
  ~InterruptFlag();
  InterruptFlag(const InterruptFlag&) = delete;
  InterruptFlag& operator=(const InterruptFlag&) = delete;
  bool raised() const;
  // Whether any rank saw Ctrl-C (ranks get it at different moments; they stop together).
  bool raised_on_any(Communicator& comm) const;

 private:
  void (*previous_)(int);
};

// Ends the job on every rank when this one fails: in a world of more than one, a rank that
// returned with an error would leave the others waiting in their next collective until the
// timeout. The single communicator rethrows (the caller prints and exits). `tool` prefixes
// the error line ("train", "rl-train").
template <class F>
int on_all_ranks_or_abort(Communicator& comm, const char* tool, F&& body) {
  if (comm.world_size() == 1) return body();
  try {
    return body();
  } catch (const std::exception& e) {
    // Communicator errors name the rank and host already.
    const std::string who = fmt::format("rank {} on {}", comm.rank(), comm.host());
    const std::string what = single_line(e.what());
    comm.abort(fmt::format("{}: error: ", tool) + (what.rfind(who, 0) == 0 ? what : who + ": " + what));
  }
  return 1;  // not reached: abort() ends the process
}

}  // namespace llmlab
