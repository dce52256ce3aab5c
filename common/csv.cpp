#include "common/csv.hpp"

#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace lifeline {
namespace {

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
  return s;
}

}  // namespace

std::string CsvFile::Where(int line) const { return path.string() + ":" + std::to_string(line); }

int CsvFile::Column(const std::string& name) const {
  for (size_t i = 0; i < header.fields.size(); ++i) {
    if (header.fields[i] == name) return static_cast<int>(i);
  }
  return -1;
}

void CsvFile::RequireHeader(const std::vector<std::string>& expected) const {
  if (header.fields != expected) {
    throw MakeConfigError(Where(header.line), "header", "the columns are " + Join(header.fields), Join(expected),
                          "the first line names the columns, in this order");
  }
}

CsvFile ParseCsv(const std::string& text, const std::string& name, const CsvOptions& options) {
  CsvFile f;
  f.path = name;
  std::vector<CsvRecord> records;
  const size_t n = text.size();
  size_t i = 0;
  int line = 1;
  while (i < n) {
    // Blank lines and comments.
    if (text[i] == '\n' || (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    if (options.comments && text[i] == '#') {
      while (i < n && text[i] != '\n') ++i;
      if (i < n) ++i;
      ++line;
      continue;
    }
    CsvRecord rec;
    rec.line = line;
    bool blank = true;
    while (true) {
      std::string field;
      bool quoted = false;
      // Spaces before an opening quote are allowed when trimming.
      size_t j = i;
      if (options.trim) {
        while (j < n && (text[j] == ' ' || text[j] == '\t')) ++j;
      }
      if (j < n && text[j] == '"') {
        quoted = true;
        i = j + 1;
        const int open_line = line;
        while (true) {
          if (i >= n) {
            throw MakeConfigError(f.Where(open_line), "", "a quoted field is not closed",
                                  "a closing '\"' (a quote inside a quoted field is written \"\")");
          }
          if (text[i] == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
        while (options.trim && i < n && (text[i] == ' ' || text[i] == '\t')) ++i;
        if (i < n && text[i] != ',' && text[i] != '\n' && !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') &&
            text[i] != '\r') {
          throw MakeConfigError(f.Where(line), "", "text after a closing quote", "',' or the end of the line",
                                "quote the whole field, writing a quote inside it as \"\"");
        }
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"') {
            throw MakeConfigError(f.Where(line), "", "a quote inside an unquoted field", "a field quoted as a whole",
                                  "write the field as \"...\" with each quote inside doubled");
          }
          field += text[i++];
        }
        if (i < n && text[i] == '\r' && !(i + 1 < n && text[i + 1] == '\n')) {
          throw MakeConfigError(f.Where(line), "", "a carriage return inside a line", "lines ending in LF or CRLF");
        }
        if (options.trim) field = Trim(field);
      }
      if (quoted || !field.empty()) blank = false;
      rec.fields.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        blank = false;
        continue;
      }
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') ++i;
      ++line;
      break;
    }
    if (blank) continue;  // a line of spaces
    records.push_back(std::move(rec));
  }
  if (records.empty()) throw MakeConfigError(name, "", "is empty", "a header line naming the columns");
  f.header = std::move(records.front());
  for (size_t r = 1; r < records.size(); ++r) {
    if (records[r].fields.size() != f.header.fields.size()) {
      throw MakeConfigError(f.Where(records[r].line), "",
                            "has " + std::to_string(records[r].fields.size()) + " fields",
                            std::to_string(f.header.fields.size()) + " fields as in the header (" +
                                Join(f.header.fields) + ")",
                            "a field holding a comma is quoted: \"a,b\"");
    }
    f.rows.push_back(std::move(records[r]));
  }
  return f;
}

CsvFile ReadCsv(const std::filesystem::path& path, const std::string& what, const std::string& hint,
                const CsvOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw MakeConfigError(path.string(), "", "is a directory, not " + what, "a readable CSV file", hint);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw MakeConfigError(path.string(), "", "cannot open " + what, "a readable CSV file", hint);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw MakeConfigError(path.string(), "", "cannot read " + what, "a readable CSV file", hint);
  return ParseCsv(ss.str(), path.string(), options);
}

}  // namespace lifeline
