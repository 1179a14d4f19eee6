#include "model/embedding_head.hpp"

namespace llmlab {

const char* token_embedding_name(const ModelSpec& m) {
  return m.arch == Arch::gpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight";
}

EmbeddingParams embedding_params(const Weights& w, const ModelSpec& m) {
  return {w.get(token_embedding_name(m)), m.arch == Arch::gpt2 ? w.get("transformer.wpe.weight") : ParamSlice{}};
}

HeadParams head_params(const Weights& w, const ModelSpec& m) {
  HeadParams h;
  if (m.arch == Arch::gpt2) {
    h.norm_w = w.get("transformer.ln_f.weight");
    h.norm_b = w.get("transformer.ln_f.bias");
  } else {
    h.norm_w = w.get("model.norm.weight");
  }
  h.lm_head = w.get(m.tie_embeddings ? token_embedding_name(m) : "lm_head.weight");
  return h;
}

}  // namespace llmlab
