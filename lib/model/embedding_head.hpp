// Where the embedding and output-head parameters are, by Hugging Face name: shared by the
// training Model and the generator (lib/model/generator.hpp), which run the same tensors.
#pragma once

#include "model/weights.hpp"
#include "spec/model_spec.hpp"

namespace llmlab {

const char* token_embedding_name(const ModelSpec& m);

// Token and (GPT-2) position embeddings: the "embedding" unit.
struct EmbeddingParams {
  ParamSlice wte, wpe;
};
EmbeddingParams embedding_params(const Weights& w, const ModelSpec& m);

// Final norm and output projection (the tied token embedding, or lm_head): the "head" unit.
struct HeadParams {
  ParamSlice norm_w, norm_b, lm_head;
};
HeadParams head_params(const Weights& w, const ModelSpec& m);

}  // namespace llmlab
