#pragma once
// Strict YAML (and JSON) reading: every error names file:line:col, the key
// path, what was expected and a hint. Unknown keys are rejected with a "did
// you mean" suggestion; there are no key synonyms; a key given twice in one
// mapping is an error.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace lifeline {

// Parses a YAML file; syntax errors become ConfigError with the position.
YAML::Node LoadYamlFile(const std::filesystem::path& path);
// Parses YAML text; `source` names it in errors (e.g. "--set").
YAML::Node LoadYamlString(const std::string& text, const std::string& source);

// Parses JSON text strictly: malformed JSON and a key given twice in one
// object (at any depth; nlohmann would keep the last) are ConfigErrors with
// file:line:col and the key path. `top_level_key_where`, when given, receives
// "file:line:col" of each key of the top-level object, for later messages.
nlohmann::json ParseJsonStrict(const std::string& text, const std::string& file,
                               std::map<std::string, std::string>* top_level_key_where = nullptr);

// "file:line:col" of a node (1-based), or just "file" when it has no mark.
std::string Where(const std::string& file, const YAML::Node& node);

// Closest candidate within edit distance 3, or "" when none is close.
std::string DidYouMean(const std::string& word, const std::vector<std::string>& candidates);
// Levenshtein distance.
size_t EditDistance(const std::string& a, const std::string& b);

// A YAML mapping read key by key. Each accessor marks its key as known;
// Finish() rejects keys no accessor asked for.
class StrictMap {
 public:
  // `path` is the key path of this map ("" at the root, "efficiency" below).
  StrictMap(YAML::Node node, std::string file, std::string path = "");

  bool Has(const std::string& key);
  // Marks keys as known without reading them (documentation-only keys).
  void Allow(const std::string& key);

  double Number(const std::string& key, const std::string& unit_hint = "");
  std::optional<double> OptionalNumber(const std::string& key, const std::string& unit_hint = "");
  double PositiveNumber(const std::string& key, const std::string& unit_hint = "");
  // A value in (0, 1].
  double Fraction(const std::string& key);
  int64_t Integer(const std::string& key);
  std::optional<int64_t> OptionalInteger(const std::string& key);
  int64_t PositiveInteger(const std::string& key);
  std::string String(const std::string& key);
  std::optional<std::string> OptionalString(const std::string& key);
  std::optional<bool> OptionalBool(const std::string& key);
  StrictMap Map(const std::string& key);
  std::optional<StrictMap> OptionalMap(const std::string& key);
  YAML::Node Node(const std::string& key);  // required, any kind

  // Throws on keys nobody asked for, with a did-you-mean hint.
  void Finish() const;

  const std::string& file() const { return file_; }
  std::string KeyPath(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  std::string WhereKey(const std::string& key) const;
  std::string WhereSelf() const { return Where(file_, node_); }
  const YAML::Node& node() const { return node_; }

 private:
  YAML::Node Required(const std::string& key, const std::string& expected);
  double ToNumber(const YAML::Node& v, const std::string& key, const std::string& unit_hint) const;

  YAML::Node node_;
  std::string file_;
  std::string path_;
  std::set<std::string> known_;
};

}  // namespace lifeline
