// Table, JSON and CSV renderings of bench-attn's rows (one field list, three formats).
#include "bench/attention_report.hpp"

#include <fmt/format.h>

#include "core/table.hpp"
#include "core/text.hpp"
#include "core/units.hpp"

namespace llmlab {

nlohmann::ordered_json attention_row_json(const AttentionRow& r) {
  const AttentionCase& c = r.shape;
  nlohmann::ordered_json j;
  j["impl"] = r.impl;
  j["device"] = r.device;
  j["dtype"] = r.dtype;
  j["seq_len"] = c.seq_len;
  j["batch"] = c.batch;
  j["tokens"] = c.tokens();
  j["docs"] = c.docs();
  j["max_doc_len"] = c.max_doc_len();
  j["heads"] = c.heads;
  j["kv_heads"] = c.kv_heads;
  j["head_dim"] = c.head_dim;
  j["causal"] = c.causal;
  j["layout"] = bench_layout_name(c.layout);
  j["mode"] = bench_mode_name(r.mode);
  j["deterministic"] = r.deterministic;
  j["kernel"] = r.kernel.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(r.kernel);
  const bool measured = r.skipped.empty();
  auto number = [&](double x) { return measured ? nlohmann::ordered_json(x) : nlohmann::ordered_json(); };
  j["ms"] = number(r.ms);
  j["ms_min"] = number(r.ms_min);
  j["ms_max"] = number(r.ms_max);
  j["repeats"] = r.repeats;
  j["tflops"] = number(r.tflops);
  j["memory_bytes"] = r.memory_bytes;
  j["max_abs_err"] = measured && r.checked ? nlohmann::ordered_json(r.max_abs_err) : nlohmann::ordered_json();
  j["rel_err"] = measured && r.checked ? nlohmann::ordered_json(r.rel_err) : nlohmann::ordered_json();
  j["naive_err"] = r.naive_err > 0 ? nlohmann::ordered_json(r.naive_err) : nlohmann::ordered_json();
  j["error_ok"] = r.error_ok;
  j["checked_rows"] = r.checked_rows;
  j["checked_columns"] = r.checked_columns;
  j["speedup_vs_naive"] = r.speedup > 0 ? nlohmann::ordered_json(r.speedup) : nlohmann::ordered_json();
  j["skipped"] = measured ? nlohmann::ordered_json() : nlohmann::ordered_json(r.skipped);
  return j;
}

namespace {

std::string csv_cell(const nlohmann::ordered_json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string quoted = "\"";
    for (char ch : s) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return quoted + "\"";
  }
  return v.dump();
}

}  // namespace

std::string attention_csv_header() {
  std::vector<std::string> keys;
  const nlohmann::ordered_json fields = attention_row_json(AttentionRow{});
  for (const auto& [key, value] : fields.items()) keys.push_back(key);
  return join(keys, ",");
}

std::string attention_csv_line(const AttentionRow& row) {
  std::vector<std::string> cells;
  const nlohmann::ordered_json fields = attention_row_json(row);
  for (const auto& [key, value] : fields.items()) cells.push_back(csv_cell(value));
  return join(cells, ",");
}

void print_attention_table(const std::vector<AttentionRow>& rows, std::ostream& out) {
  // CPU rates read better in GFLOP/s, GPU ones in TFLOP/s.
  bool gpu = false;
  for (const AttentionRow& r : rows) gpu = gpu || r.device.rfind("cpu", 0) != 0;
  Table t;
  t.column("impl", Table::Align::left)
      .column("seq_len")
      .column("batch")
      .column("d")
      .column("heads")
      .column("mask", Table::Align::left)
      .column("layout", Table::Align::left)
      .column("mode", Table::Align::left)
      .column("ms")
      .column(gpu ? "TFLOP/s" : "GFLOP/s")
      .column("memory")
      .column("max abs err")
      .column("vs naive", Table::Align::left);
  for (const AttentionRow& r : rows) {
    const AttentionCase& c = r.shape;
    std::vector<std::string> cells = {r.impl,
                                      std::to_string(c.seq_len),
                                      std::to_string(c.batch),
                                      std::to_string(c.head_dim),
                                      c.kv_heads == c.heads ? std::to_string(c.heads) : fmt::format("{}/{}", c.heads, c.kv_heads),
                                      c.causal ? "causal" : "full",
                                      bench_layout_name(c.layout),
                                      bench_mode_name(r.mode)};
    if (!r.skipped.empty()) {
      cells.insert(cells.end(), {"-", "-", "-", "-", "skipped: " + r.skipped});
    } else {
      std::string versus;
      if (r.speedup > 0) versus = fmt::format("{:.2f}x faster", r.speedup);
      if (r.naive_err > 0) versus += fmt::format("{}err {:.2f}x", versus.empty() ? "" : ", ", r.max_abs_err / r.naive_err);
      if (!r.error_ok) versus += versus.empty() ? "ERROR TOO LARGE" : ", ERROR TOO LARGE";
      cells.insert(cells.end(), {fmt::format("{:.3f}", r.ms), fmt::format("{:.1f}", gpu ? r.tflops : r.tflops * 1e3),
                                 format_bytes(static_cast<double>(r.memory_bytes)),
                                 r.checked ? fmt::format("{:.2e}", r.max_abs_err) : "-", versus});
    }
    t.row(cells);
  }
  t.print(out);
}

}  // namespace llmlab
