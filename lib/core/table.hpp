// Column-aligned text tables for terminal reports (memory-plan, bench-attn, train summary).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace llmlab {

class Table {
 public:
  enum class Align { left, right };

  // Columns are declared once; every row must have as many cells.
  Table& column(std::string header, Align align = Align::right);
  Table& row(std::vector<std::string> cells);
  // A horizontal rule before the next row (e.g. before a total).
  Table& rule();

  void print(std::ostream& out, const std::string& indent = "") const;

 private:
  struct Column {
    std::string header;
    Align align;
  };
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;  // an empty row is a rule
};

}  // namespace llmlab
