// Training, data, checkpointing, ZeRO, distribution and hardware settings: plain structs
// filled by the recipe loader (lib/recipe), read by the planner and the step loops.
// Defaults here are the documented defaults (`memory-plan --list-keys` prints them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llmlab {

enum class Precision { bf16_mixed, fp16_mixed, fp32 };
enum class GradDtype { bf16, fp32 };
enum class AttentionImpl { flash, naive };
enum class CheckpointPolicy { none, full, selective, every_k, sqrt, budget };
// What `selective` recomputes: `core` is Megatron's attention core (scores, softmax,
// dropout); `pointwise` adds norm outputs and activation-function outputs.
enum class SelectiveScope { core, pointwise };
enum class Device { cpu, cuda };

enum class InputFormat { auto_detect, jsonl, text };
enum class PackStrategy { greedy, bfd, spfhp };  // see data/pack/packer.hpp
enum class OverflowPolicy { truncate, split, drop };
enum class ChatTemplateKind { chatml, llama3, custom };
enum class LrSchedule { cosine, linear, constant };
enum class NonFinitePolicy { stop, skip };  // what a NaN/inf loss or gradient does

struct DataSettings {
  std::int64_t packing_length = 2048;  // tokens per packed row (= sequence length)
  std::int64_t vision_tokens = 0;      // image patches per row fed to the vision encoder

  // pack-data: where documents come from and how they become tokens.
  std::vector<std::string> inputs;     // files (JSONL, text, .gz), resolved against the recipe
  InputFormat format = InputFormat::auto_detect;  // auto: .jsonl/.json(.gz) are JSONL, else text
  std::string text_field = "text";     // JSONL field holding plain text
  std::string text_delimiter;          // text files: document separator; empty = one per file
  std::string tokenizer = "byte";      // "byte" or a tokenizer.json path
  ChatTemplateKind chat_template = ChatTemplateKind::chatml;
  std::string chat_prefix;             // custom template: text before the first message
  std::string chat_message;            // custom template: one message, with {role} and {content}
  bool add_bos = false;
  bool add_eos = true;                 // after text and prompt/completion documents
  std::string bos_token;               // empty: the tokenizer's usual one
  std::string eos_token;

  // pack-data: how documents become rows and shards.
  PackStrategy strategy = PackStrategy::bfd;
  OverflowPolicy overflow = OverflowPolicy::split;
  std::int64_t pack_window = 200'000;  // documents packed together (bounds memory)
  std::int64_t rows_per_shard = 16'384;
  std::uint64_t seed = 0;              // row order within each window
  std::string output = "packed";       // output directory
  bool skip_bad = false;               // count and skip bad records instead of stopping
  std::int64_t threads = 0;            // tokenizer threads; 0 = all cores

  // train: where packed rows come from (pack-data output directories or shard files).
  std::vector<std::string> shards;
};

struct TrainSettings {
  std::int64_t micro_batch_size = 1;             // packed rows per rank per micro-step
  std::int64_t gradient_accumulation_steps = 1;  // micro-steps per optimizer step
  Precision precision = Precision::bf16_mixed;
  GradDtype grad_dtype = GradDtype::bf16;  // fp32 gradients: Megatron/DeepSpeed's 18 B/param
  AttentionImpl attention = AttentionImpl::flash;
  bool causal = true;
  std::int64_t steps = 100;           // optimizer steps of the run
  std::uint64_t seed = 0;             // initialisation and data order
  std::int64_t threads = 0;           // CPU threads; 0 = all cores
  NonFinitePolicy on_nonfinite = NonFinitePolicy::stop;
  std::int64_t exit_interval = 0;     // save and exit after steps divisible by this (job time limits)
};

// AdamW with decoupled weight decay and a warmup + decay learning-rate schedule.
struct OptimSettings {
  double lr = 3e-4;                  // peak learning rate
  double min_lr_ratio = 0.1;         // final lr as a fraction of lr (cosine, linear)
  LrSchedule schedule = LrSchedule::cosine;
  std::int64_t warmup_steps = 0;     // linear warmup from 0
  double weight_decay = 0.1;         // on matrices only: not norms, biases or embeddings
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;            // clip the global gradient norm; 0 = off
};

struct EvalSettings {
  std::vector<std::string> shards;   // held-out rows; empty = no evaluation
  std::int64_t every = 0;            // steps between evaluations (0 = only at the end)
  std::int64_t batches = 4;          // micro-batches per evaluation
};

// Where a run writes its metrics and checkpoints.
struct OutputSettings {
  std::string dir = "runs/default";  // metrics.jsonl and checkpoints/; unset: ./runs/<model name>
  std::int64_t save_every = 0;       // steps between checkpoints; 0 = only at the end
  std::int64_t keep_last = 2;        // checkpoints kept; 0 = all
  std::int64_t log_every = 1;        // steps between progress lines and metrics records
  bool checkpoints = true;           // false: write no checkpoints (benchmarks, smoke tests)
};

struct CheckpointSettings {
  CheckpointPolicy policy = CheckpointPolicy::none;
  std::int64_t every_k = 2;  // segment length for every_k
  SelectiveScope selective = SelectiveScope::core;
  std::uint64_t budget = 0;  // activation bytes for `budget`; 0 = what the device leaves free
};

struct ZeroSettings {
  std::int64_t stage = 0;
  std::int64_t bucket_elements = 4'194'304;  // elements per gradient reduction (chunk of the collective)
  std::int64_t prefetch_layers = 1;           // ZeRO-3: layers gathered ahead of use
};

struct DistSettings {
  std::int64_t world_size = 1;  // data-parallel ranks to plan for (train: the launched ranks)
  double timeout_seconds = 300;  // a collective not complete by then ends every rank with an error
};

struct HardwareSettings {
  Device device = Device::cuda;
  std::uint64_t memory = 0;        // per-rank device memory; resolved from the device when 0
  bool memory_auto = false;        // `memory: auto`: query the device at load time
  double peak_tflops = 0;          // dense peak for the training dtype; resolved when 0
  double mfu = 0.4;                // fraction of peak the step achieves (for step time)
  double interconnect_gbps = 0;    // per-rank collective bus bandwidth, GB/s; resolved when 0
  double comm_overlap = 0.75;      // fraction of communication hidden behind compute
  std::int64_t runtime_overhead = -1;  // CUDA context etc., bytes; -1 = device default
  double allocator_reserve = -1;       // fragmentation reserve, fraction of the rest; -1 = default
};

// Everything the planner and the step loops need besides the model: what a recipe sets.
struct RunSettings {
  DataSettings data;
  TrainSettings train;
  CheckpointSettings checkpointing;
  ZeroSettings zero;
  DistSettings dist;
  HardwareSettings hardware;
  OptimSettings optim;
  EvalSettings eval;
  OutputSettings output;

  // Bytes of one activation element: 2 under 16-bit mixed precision, 4 in fp32.
  std::int64_t activation_bytes() const { return train.precision == Precision::fp32 ? 4 : 2; }
};

const char* precision_name(Precision p);
const char* policy_name(CheckpointPolicy p);
const char* attention_name(AttentionImpl a);
const char* device_name(Device d);
const char* selective_name(SelectiveScope s);
const char* grad_dtype_name(GradDtype g);
const char* overflow_name(OverflowPolicy o);
const char* schedule_name(LrSchedule s);

}  // namespace llmlab
