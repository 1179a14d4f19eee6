// One measured attention shape of bench-attn's sweep, its inputs and its FLOP count.
// A case is a batch of packed rows flattened without padding (rmpad): `cu_seqlens` holds the
// documents of every row back to back, as the kernels take them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "spec/bench_settings.hpp"

namespace llmlab {

struct AttentionCase {
  std::int64_t seq_len = 0;  // packed row length
  std::int64_t batch = 0;    // rows
  std::int64_t head_dim = 0;
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;
  bool causal = true;
  BenchLayout layout = BenchLayout::dense;
  std::vector<std::int32_t> cu_seqlens;  // docs + 1 entries, from 0 to tokens()

  std::int64_t tokens() const { return cu_seqlens.empty() ? 0 : cu_seqlens.back(); }
  std::int64_t docs() const { return static_cast<std::int64_t>(cu_seqlens.size()) - 1; }
  std::int64_t max_doc_len() const;
  // Materialised probabilities of the naive kernel: heads * sum of len^2 elements.
  std::int64_t prob_elements() const;
  // FlashAttention's convention: forward 4 len^2 heads head_dim per document, halved when
  // causal; backward 2.5x forward.
  double forward_flops() const;
  double flops(BenchMode mode) const;
  // "s=2048 b=4 h=4/4 d=64 causal dense"
  std::string label() const;
};

// Document lengths of varlen rows: `source` is "lognormal", "equal" (4 documents a row, each
// seq_len / 4 give or take a token: the packed counterpart of dense rows of that length) or a
// pack-data shard path. Lengths are dealt into `batch` rows of exactly `seq_len` tokens (a
// document that does not fit is cut at the row's end, as packing with splitting does). Throws
// InputError for an unreadable shard.
std::vector<std::int32_t> varlen_cu_seqlens(const std::string& source, std::int64_t seq_len, std::int64_t batch,
                                            std::uint64_t seed);

// The sweep the settings describe, in the order it runs: head_dim, causal, layout, seq_len.
std::vector<AttentionCase> attention_cases(const AttentionBenchSettings& s);

// Host fp32 inputs of a case: q, dout [T, Hq, D]; k, v [T, Hkv, D]; uniform in [-1, 1],
// rounded to `dtype` (bf16/fp16) so a reference sees exactly what a 16-bit kernel sees.
struct AttentionInputs {
  std::vector<float> q, k, v, dout;
};
AttentionInputs attention_inputs(const AttentionCase& c, BenchDtype dtype, std::uint64_t seed);

}  // namespace llmlab
