#pragma once
// Reading the evaluation sets' jsonl files: one JSON object per line, errors
// naming the file and line.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace lifeline::recovery {

// Calls fn(json, line number) for each non-blank line of a jsonl file, up to
// `limit` (> 0) lines. ConfigError naming the file when it cannot be opened,
// and file:line when a line is not JSON (or fn throws a JSON error).
template <typename Fn>
void ForEachJsonLine(const std::filesystem::path& path, int64_t limit, Fn fn) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("{}: cannot open data file", path.string()));
  std::string line;
  int64_t line_no = 0, count = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    if (limit > 0 && count >= limit) break;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
      fn(j, line_no);
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError(fmt::format("{}:{}: malformed item ({})", path.string(), line_no, e.what()));
    }
    ++count;
  }
}

// The string value of `key`; ConfigError naming file:line and the key when it
// is missing or not a string.
inline std::string JsonLineString(const nlohmann::json& j, const std::filesystem::path& path,
                                  int64_t line, const char* key) {
  if (!j.contains(key) || !j[key].is_string())
    throw ConfigError(fmt::format("{}:{}: key '{}': missing or not a string", path.string(), line, key));
  return j[key].get<std::string>();
}

}  // namespace lifeline::recovery
