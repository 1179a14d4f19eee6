// Grid sweeps over recipe keys.
#include "tools/sweep.hpp"

#include <fmt/format.h>

#include <charconv>

#include "core/table.hpp"
#include "core/text.hpp"
#include "core/units.hpp"
#include "plan/report.hpp"
#include "recipe/recipe.hpp"
#include "tools/recipe_plan.hpp"

namespace llmlab {

namespace {

bool parse_int(const std::string& s, long long& out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, out);
  return ec == std::errc() && ptr == end;
}

}  // namespace

SweepAxis parse_sweep_axis(const std::string& text) {
  const SourceLoc where{"--sweep", 0, 0};
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw InputError(where, text, "expected key=v1,v2,... (e.g. --sweep train.micro_batch_size=1,2,4)");
  SweepAxis axis{text.substr(0, eq), {}};
  for (const std::string& item : split(text.substr(eq + 1), ',')) {
    const std::size_t dots = item.find("..");
    if (dots == std::string::npos) {
      if (item.empty()) throw InputError(where, axis.key, "empty value in the list");
      axis.values.push_back(item);
      continue;
    }
    long long lo = 0, hi = 0, step = 1;
    std::string rest = item.substr(dots + 2);
    const std::size_t colon = rest.find(':');
    const bool ok = parse_int(item.substr(0, dots), lo) && parse_int(rest.substr(0, colon), hi) &&
                    (colon == std::string::npos || parse_int(rest.substr(colon + 1), step));
    if (!ok || step <= 0 || hi < lo)
      throw InputError(where, axis.key, fmt::format("'{}' is not a range a..b or a..b:step with a <= b, step > 0", item));
    // hi - lo in unsigned arithmetic cannot overflow for hi >= lo; the loop counts points, so
    // it cannot wrap past INT64_MAX either.
    const unsigned long long points = (static_cast<unsigned long long>(hi) - static_cast<unsigned long long>(lo)) /
                                          static_cast<unsigned long long>(step) + 1;
    if (points > 100000) throw InputError(where, axis.key, "a sweep of more than 100,000 points");
    for (unsigned long long i = 0; i < points; ++i)
      axis.values.push_back(std::to_string(static_cast<long long>(
          static_cast<unsigned long long>(lo) + i * static_cast<unsigned long long>(step))));
  }
  return axis;
}

std::vector<SweepRow> run_sweep(const RawConfig& base, const std::vector<SweepAxis>& axes,
                                std::uint64_t memory_override) {
  std::vector<SweepRow> rows;
  std::vector<std::size_t> at(axes.size(), 0);
  while (true) {
    RawConfig raw = base;
    SweepRow row;
    for (std::size_t a = 0; a < axes.size(); ++a) {
      apply_override(raw, axes[a].key + "=" + axes[a].values[at[a]]);
      row.values.push_back(axes[a].values[at[a]]);
    }
    row.plan = plan_json(plan_recipe(bind_recipe(raw), memory_override));
    rows.push_back(std::move(row));
    // Odometer over the axes, last axis fastest.
    std::size_t a = axes.size();
    while (a > 0 && ++at[a - 1] == axes[a - 1].values.size()) at[--a] = 0;
    if (a == 0) break;
  }
  return rows;
}

void print_sweep(const std::vector<SweepAxis>& axes, const std::vector<SweepRow>& rows, std::ostream& out) {
  Table t;
  for (const auto& a : axes) t.column(a.key);
  t.column("model states GiB").column("activations GiB").column("peak GiB").column("step").column("tokens/s")
      .column("fits", Table::Align::left);
  for (const auto& r : rows) {
    std::vector<std::string> cells = r.values;
    const auto& pr = r.plan["per_rank"];
    cells.push_back(format_gib(pr["model_states_bytes"].get<double>()));
    cells.push_back(format_gib(pr["activations_bytes"].get<double>()));
    cells.push_back(format_gib(pr["peak_bytes"].get<double>()));
    cells.push_back(format_seconds(r.plan["compute"]["step_seconds"].get<double>()));
    cells.push_back(format_count(static_cast<std::uint64_t>(r.plan["compute"]["tokens_per_second"].get<double>())));
    cells.push_back(r.plan["fits"].get<bool>() ? "yes" : "no");
    t.row(cells);
  }
  t.print(out);
}

nlohmann::ordered_json sweep_json(const std::vector<SweepAxis>& axes, const std::vector<SweepRow>& rows) {
  nlohmann::ordered_json j;
  j["sweep"] = nlohmann::ordered_json::array();
  for (const auto& a : axes) j["sweep"].push_back(a.key);
  j["rows"] = nlohmann::ordered_json::array();
  for (const auto& r : rows) {
    nlohmann::ordered_json row;
    for (std::size_t a = 0; a < axes.size(); ++a) row["values"][axes[a].key] = r.values[a];
    row["parameters"] = r.plan["parameters"];
    row["per_rank"] = r.plan["per_rank"];
    row["fits"] = r.plan["fits"];
    row["settings"] = r.plan["settings"];
    row["compute"] = r.plan["compute"];
    j["rows"].push_back(row);
  }
  return j;
}

}  // namespace llmlab
