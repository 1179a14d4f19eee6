// Incremental (KV-cached) forward of a GPT-2 or Llama decoder for generation: the same
// parameters, the same backend ops and the same per-layer math as training's block_forward
// (lib/model/decoder_block.cpp), but keeping each layer's post-RoPE keys and values in a
// KvCache so a new token costs one row per layer instead of the whole prefix.
//
// prefill runs prompts token-parallel, packed back to back without padding (cu_seqlens, the
// flash kernel, as training does), and fills their cache rows; decode appends one token to
// each listed sequence, attending to its cache with attention_decode. Both return the logits
// of each sequence's last token (host, [rows, V]) for the sampler.
//
// Memory: the cache is allocated once (Category::activations); each pass takes its
// temporaries, sized by its row count, from the same TrackedMemory, whose size-keyed cache of
// freed blocks makes repeated decode steps reuse them rather than call the system allocator.
#pragma once

#include <cstdint>
#include <vector>

#include "model/kv_cache.hpp"
#include "model/tracked_memory.hpp"
#include "model/weights.hpp"
#include "ops/backend.hpp"
#include "spec/model_spec.hpp"

namespace llmlab {

class Generator {
 public:
  // `weights` must hold the whole model (not a ZeRO-3 shard) and outlive the generator; its
  // bound tensors are read at every pass, so updating them in place changes the policy.
  // Throws Error for architectures the decoder layers do not implement (MoE, MLA, qk-norm).
  Generator(const ModelSpec& model, const Weights& weights, Backend& backend, TrackedMemory& mem,
            std::int64_t sequences, std::int64_t capacity);

  const ModelSpec& spec() const { return m_; }
  const KvCache& cache() const { return cache_; }
  std::int64_t length(std::int64_t seq) const { return cache_.length(seq); }

  // Restarts sequences seqs[i] with prompts[i] (non-empty, within capacity) and writes the
  // logits after each prompt's last token into logits [prompts, V].
  void prefill(const std::vector<std::int32_t>& seqs, const std::vector<std::vector<std::int32_t>>& prompts,
               std::vector<float>& logits);
  // Sequence `to` becomes a copy of sequence `from` (its cached rows and length): k samples of
  // one prompt share a single prefill.
  void copy_sequence(std::int32_t from, std::int32_t to);
  // Appends tokens[i] to sequence seqs[i] (distinct, with room left) and writes the logits
  // after it into logits [seqs, V].
  void decode(const std::vector<std::int32_t>& seqs, const std::vector<std::int32_t>& tokens,
              std::vector<float>& logits);

 private:
  struct Pass;
  void check_sequence(std::int32_t seq) const;
  void run(Pass& pass, std::vector<float>& logits);
  void layer(const Pass& pass, std::int64_t layer, float* x);

  ModelSpec m_;
  const Weights& w_;
  Backend& be_;
  TrackedMemory& mem_;
  KvCache cache_;
};

}  // namespace llmlab
