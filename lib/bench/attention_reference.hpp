// A float64 reference for bench-attn's error column, computed exactly at sampled positions so
// that it stays affordable at 16k tokens: `out` and `dq` at sampled query rows (each costs one
// pass over its document's keys), `dk` and `dv` at sampled key columns (each needs the
// softmax statistics of every query row that sees it: under a causal mask the columns are
// taken near the document's end, where few rows do; without one, only documents short
// enough for the budget get column samples). Positions are seeded, so every implementation
// of a case is compared at the same ones.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/attention_case.hpp"

namespace llmlab {

// An implementation's results on the host in fp32 (16-bit results widened); tensors a mode
// did not produce stay empty. Layouts as the kernels': out, dq [T, Hq, D]; dk, dv [T, Hkv, D].
struct AttentionOutputs {
  std::vector<float> out, dq, dk, dv;
};

struct AttentionError {
  double max_abs = 0;       // largest |result - reference| over compared elements
  double max_ref = 0;       // largest |reference| over the same elements
  std::int64_t compared = 0;
  bool finite = true;       // false when a compared result was NaN or infinite

  double relative() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
  void add(double result, double reference);
  void merge(const AttentionError& other);
};

class AttentionReference {
 public:
  // Samples about `rows` query rows (always the first and last tokens of the first and last
  // documents) and up to `columns` key columns, and computes them.
  AttentionReference(const AttentionCase& c, const AttentionInputs& in, std::uint64_t seed, int rows = 48,
                     int columns = 16);

  AttentionError forward_error(const AttentionOutputs& o) const;   // out at the sampled rows
  AttentionError backward_error(const AttentionOutputs& o) const;  // dq rows, dk and dv columns
  std::int64_t rows() const { return static_cast<std::int64_t>(rows_.size()); }
  std::int64_t columns() const { return static_cast<std::int64_t>(columns_.size()); }

 private:
  struct Row {
    std::int64_t token = 0, head = 0;
    std::vector<double> out, dq;
  };
  struct Column {
    std::int64_t token = 0, kv_head = 0;
    std::vector<double> dk, dv;
  };
  std::int64_t heads_ = 0, kv_heads_ = 0, head_dim_ = 0;
  std::vector<Row> rows_;
  std::vector<Column> columns_;
};

}  // namespace llmlab
