// bench-attn's output: rows as a terminal table, JSON lines (one object per measurement) or
// CSV with the same fields as the JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

#include "bench/attention_sweep.hpp"

namespace llmlab {

// impl, device, dtype, seq_len, batch, tokens, docs, heads, kv_heads, head_dim, causal,
// layout, mode, ms, ms_min, ms_max, repeats, tflops, memory_bytes, max_abs_err, rel_err,
// naive_err, error_ok, checked_rows, checked_columns, speedup_vs_naive, skipped.
nlohmann::ordered_json attention_row_json(const AttentionRow& row);
std::string attention_csv_header();
std::string attention_csv_line(const AttentionRow& row);
void print_attention_table(const std::vector<AttentionRow>& rows, std::ostream& out);

}  // namespace llmlab
