// Text table layout: widths from the widest cell, UTF-8 aware for the few symbols we print.
#include "core/table.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace llmlab {

namespace {

// Display width of a UTF-8 string: counts code points, not bytes (we print "×", "≈").
std::size_t display_width(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

}  // namespace

Table& Table::column(std::string header, Align align) {
  columns_.push_back({std::move(header), align});
  return *this;
}

Table& Table::row(std::vector<std::string> cells) {
  if (cells.size() != columns_.size())
    throw Error("internal: table row has " + std::to_string(cells.size()) + " cells, expected " +
                std::to_string(columns_.size()));
  rows_.push_back(std::move(cells));
  return *this;
}

Table& Table::rule() {
  rows_.emplace_back();
  return *this;
}

void Table::print(std::ostream& out, const std::string& indent) const {
  std::vector<std::size_t> width(columns_.size());
  for (std::size_t c = 0; c < columns_.size(); ++c) width[c] = display_width(columns_[c].header);
  for (const auto& r : rows_)
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], display_width(r[c]));

  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line = indent;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const std::size_t pad = width[c] - display_width(cells[c]);
      if (c) line += "  ";
      if (columns_[c].align == Align::right) line.append(pad, ' ');
      line += cells[c];
      if (columns_[c].align == Align::left && c + 1 < cells.size()) line.append(pad, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  auto emit_rule = [&] {
    std::size_t total = 0;
    for (std::size_t c = 0; c < width.size(); ++c) total += width[c] + (c ? 2 : 0);
    std::string line = indent;
    for (std::size_t i = 0; i < total; ++i) line += "─";
    out << line << '\n';
  };

  std::vector<std::string> headers;
  for (const auto& c : columns_) headers.push_back(c.header);
  emit(headers);
  emit_rule();
  for (const auto& r : rows_) {
    if (r.empty())
      emit_rule();
    else
      emit(r);
  }
}

}  // namespace llmlab
