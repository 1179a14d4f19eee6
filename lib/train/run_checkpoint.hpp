// What a training checkpoint holds and how it is read back: model.safetensors (fp32 weights
// under their Hugging Face names) with a Hugging Face config.json beside it, so that
// transformers' from_pretrained loads the directory, optimizer.safetensors (AdamW
// moments under the same names), and state.json (step, data cursor, counters, recipe hash).
// Written into a temporary directory that CheckpointStore renames into place when complete.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "data/batch.hpp"
#include "model/weights.hpp"
#include "optim/adamw.hpp"

namespace llmlab {

struct RunState {
  std::int64_t step = 0;            // optimizer steps completed
  DataCursor cursor;                // the next training row
  std::uint64_t tokens_seen = 0;
  std::string recipe_hash;          // of the resolved recipe (a resume under other settings warns)
};

// The Hugging Face config.json of a GPT-2 (GPT2LMHeadModel) or Llama (LlamaForCausalLM) spec.
nlohmann::ordered_json hf_config_json(const ModelSpec& m);

void save_checkpoint_files(const std::string& dir, const Weights& w, const AdamW& opt, Backend& be,
                           const RunState& state, const ModelSpec& spec, const nlohmann::ordered_json& model_config);

// Loads weights, optimizer moments and state written by save_checkpoint_files.
RunState load_checkpoint_files(const std::string& dir, Weights& w, AdamW& opt, Backend& be);

// Loads weights only, by Hugging Face name, from a safetensors file or a checkpoint
// directory (F32, F16, BF16 converted). Every parameter must be present with its shape;
// returns the names of tensors in the file that the model does not have (ignored).
std::vector<std::string> load_weights(const std::string& path, Weights& w, Backend& be);

}  // namespace llmlab
