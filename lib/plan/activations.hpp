// What one block (decoder layer, vision block, MTP module, output head) saves in forward for
// its backward, slot by slot, with the class that decides when a checkpointing policy may drop
// it, plus the block's FLOPs and its backward's gradient temporaries. Both memory-plan and
// train size activations from these tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "spec/model_spec.hpp"
#include "spec/settings.hpp"

namespace llmlab {

enum class SlotClass {
  input,      // the block input: the checkpoint every policy keeps
  saved,      // kept unless the whole block is recomputed
  core,       // attention core (scores, probabilities, dropout): dropped by selective
  pointwise,  // cheap elementwise outputs (norms, activations): dropped by selective=pointwise
};

struct Slot {
  std::string name;   // e.g. "attn.q"
  std::string shape;  // e.g. "[T, 4096]" for display
  std::int64_t bytes;
  SlotClass cls;
  bool loss = false;       // logits and loss statistics (reported as their own category)
  double rebuild_flops;    // FLOPs to recompute it from the slots kept by `selective`
};

struct BlockProfile {
  std::string kind;  // "decoder", "decoder (MoE)", "vision", "projector", "mtp"
  std::vector<Slot> slots;
  double forward_flops = 0;
  double backward_flops = 0;
  std::int64_t backward_scratch = 0;  // gradient temporaries live at the block's backward peak
  // The block's output, written during its forward into a new buffer that becomes the next
  // block's input (the residual stream is not updated in place: the input is a saved slot).
  std::int64_t output_bytes = 0;

  std::int64_t bytes_of(SlotClass cls) const;
  std::int64_t total_bytes() const;
};

// Tokens and lengths of one micro-batch on one rank.
struct MicroBatch {
  std::int64_t rows;     // b
  std::int64_t seq_len;  // s (packing length)
  std::int64_t tokens() const { return rows * seq_len; }
};

BlockProfile decoder_block(const ModelSpec& m, const RunSettings& run, std::int64_t layer);
BlockProfile mtp_module(const ModelSpec& m, const RunSettings& run, std::int64_t depth);
BlockProfile vision_block(const ModelSpec& m, const RunSettings& run);
BlockProfile vision_projector(const ModelSpec& m, const RunSettings& run);
// Final norm, logits (fp32, the fused cross-entropy writes their gradient in place) and loss.
BlockProfile output_head(const ModelSpec& m, const RunSettings& run);
// Token ids, targets, position ids, loss mask, cu_seqlens (and image pixels) of one micro-batch.
std::int64_t input_bytes(const ModelSpec& m, const RunSettings& run);

}  // namespace llmlab
