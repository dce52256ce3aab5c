#pragma once
// The project's CSV reader (RFC 4180): fields separated by commas, quoted
// fields may hold commas, doubled quotes and line breaks, lines end in LF or
// CRLF. The first record is the header. Errors are ConfigErrors naming
// `file:line`.

#include <filesystem>
#include <string>
#include <vector>

namespace lifeline {

struct CsvOptions {
  bool trim = true;      // strip spaces and tabs around unquoted fields
  bool comments = true;  // skip lines whose first character is '#'
};

// One record and the line it starts on (1-based).
struct CsvRecord {
  int line = 0;
  std::vector<std::string> fields;
};

struct CsvFile {
  std::filesystem::path path;
  CsvRecord header;
  std::vector<CsvRecord> rows;  // every record after the header, each with the header's field count

  // "file:line", for messages.
  std::string Where(int line) const;
  // Index of column `name` in the header, or -1.
  int Column(const std::string& name) const;
  // Throws a ConfigError unless the header is exactly `expected`, in order.
  void RequireHeader(const std::vector<std::string>& expected) const;
};

// Parses CSV text; `name` is the file name used in messages. Blank lines are
// skipped; a record with a field count other than the header's, an unclosed
// quote or text after a closing quote is a ConfigError naming name:line.
CsvFile ParseCsv(const std::string& text, const std::string& name, const CsvOptions& options = {});

// Reads and parses a file; `what` says what it is ("the observations CSV") for
// the message when it cannot be read, `hint` how to fix that.
CsvFile ReadCsv(const std::filesystem::path& path, const std::string& what = "a CSV file", const std::string& hint = "",
                const CsvOptions& options = {});

}  // namespace lifeline
