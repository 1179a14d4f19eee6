// The resolved recipe as YAML (--print-config) and the key reference (--list-keys).
#include <fmt/format.h>

#include <sstream>

#include "core/table.hpp"
#include "core/text.hpp"
#include "recipe/recipe.hpp"
#include "recipe/schema.hpp"

namespace llmlab {

std::string resolved_yaml(const Recipe& recipe) {
  std::ostringstream out;
  out << "# resolved from " << recipe.path << "\n";
  std::vector<std::string> open;  // the section path currently open
  for (const auto& f : recipe_schema()) {
    if (!f.printed) continue;
    const std::vector<std::string> parts = split(f.key, '.');
    std::size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) ++common;
    open.resize(common);
    for (std::size_t i = common; i + 1 < parts.size(); ++i) {
      out << std::string(2 * i, ' ') << parts[i] << ":\n";
      open.push_back(parts[i]);
    }
    out << std::string(2 * (parts.size() - 1), ' ') << parts.back() << ": " << f.show(recipe) << "\n";
  }
  return out.str();
}

std::string describe_keys() {
  const Recipe defaults;
  Table t;
  t.column("key", Table::Align::left).column("type", Table::Align::left).column("default", Table::Align::left)
      .column("meaning", Table::Align::left);
  for (const auto& f : recipe_schema())
    t.row({f.key, f.type, f.default_text.empty() ? f.show(defaults) : f.default_text, f.doc});
  std::ostringstream out;
  t.print(out);
  return out.str();
}

}  // namespace llmlab
