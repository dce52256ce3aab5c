#pragma once
// Tables and their writers: Markdown, CSV, LaTeX (booktabs) and JSON. Every
// report lifeline writes goes through these, so all formats carry the same
// numbers.

#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/atomic_file.hpp"

namespace lifeline::reports {

// One cell: empty, text, or a number printed with `precision` decimals.
struct Cell {
  std::variant<std::monostate, std::string, double> value;
  int precision = 2;

  Cell() = default;
  Cell(std::string s) : value(std::move(s)) {}  // NOLINT: implicit on purpose
  Cell(const char* s) : value(std::string(s)) {}  // NOLINT
  Cell(double d, int prec) : value(d), precision(prec) {}
  static Cell Int(long long v) { return Cell(static_cast<double>(v), 0); }
  static Cell Opt(std::optional<double> d, int prec) { return d ? Cell(*d, prec) : Cell(); }

  bool IsEmpty() const { return std::holds_alternative<std::monostate>(value); }
  std::string Text() const;  // as printed in Markdown/CSV/LaTeX ("" when empty)
};

struct Table {
  std::string title;                 // heading / LaTeX caption
  std::vector<std::string> columns;  // machine-friendly names (CSV header, JSON keys)
  std::vector<std::string> headers;  // human headers for Markdown/LaTeX (default: columns)
  std::vector<std::vector<Cell>> rows;
  std::vector<std::string> notes;    // printed under the table

  const std::string& Header(size_t i) const { return headers.size() == columns.size() ? headers[i] : columns[i]; }
};

std::string ToMarkdown(const Table& t);
std::string ToCsv(const Table& t);
std::string ToLatex(const Table& t);
std::string ToJson(const Table& t);
// Plain aligned text for terminals.
std::string ToText(const Table& t);

// Writes DIR/STEM.{md,csv,tex,json}; returns the paths written.
std::vector<std::filesystem::path> WriteTable(const Table& t, const std::filesystem::path& dir, const std::string& stem);
// Files are written through the common library's WriteFileAtomic (temporary +
// rename; devices, FIFOs and symbolic links respected).
using lifeline::WriteFileAtomic;

}  // namespace lifeline::reports
