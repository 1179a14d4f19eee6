// What a training checkpoint holds and how it is read back: model.safetensors (fp32 weights
// under their Hugging Face names) with a Hugging Face config.json beside it, so that
// transformers' from_pretrained loads the directory; the AdamW moments as flat shards,
// optimizer-RRRRR-of-NNNNN.safetensors, each "exp_avg" and "exp_avg_sq" of the flat range
// [begin, end) its metadata names (ZeRO's layout: one file per rank, or one for a whole
// buffer); and state.json (step, data cursor, counters, recipe hash). Any world size reads
// any other's shards (a rank copies the parts of the files that overlap its own range).
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

// Which files of a checkpoint this rank writes.
struct CheckpointPart {
  int shard = 0, shards = 1;  // its optimizer file: optimizer-<shard>-of-<shards>
  bool optimizer = true;      // writes its optimizer range (ZeRO-0 ranks other than 0 do not)
  bool model = true;          // writes model.safetensors, config.json and state.json
  int world_size = 1, zero_stage = 0;  // recorded in state.json
};

// `params` is the whole flat parameter buffer in host memory (read only when part.model).
void save_checkpoint_files(const std::string& dir, const Weights& w, const float* params, const AdamW& opt,
                           Backend& be, const RunState& state, const ModelSpec& spec,
                           const nlohmann::ordered_json& model_config, const CheckpointPart& part = {});

// Loads state, this rank's stored parameters (whole or its shard) and its optimizer range,
// whatever world size wrote them.
RunState load_checkpoint_files(const std::string& dir, Weights& w, AdamW& opt, Backend& be);

// Loads weights only, by Hugging Face name, from a safetensors file or a checkpoint
// directory (F32, F16, BF16 converted). Every parameter must be present with its shape;
// returns the names of tensors in the file that the model does not have (ignored).
std::vector<std::string> load_weights(const std::string& path, Weights& w, Backend& be);

// The file name of optimizer shard `shard` of `shards`.
std::string optimizer_shard_name(int shard, int shards);

}  // namespace llmlab
