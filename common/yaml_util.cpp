#include "common/yaml_util.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>
#include <vector>

#include "common/error.hpp"

namespace lifeline {

namespace {

// Rejects a mapping that names a key twice (yaml-cpp keeps both and a lookup
// finds the first), at any depth. Each node is visited once, so aliases that
// repeat a subtree many times cost nothing extra.
void CheckDuplicateKeys(const YAML::Node& node, const std::string& source, const std::string& path,
                        std::set<std::tuple<int, int, size_t>>& visited) {
  if (!node.IsMap() && !node.IsSequence()) return;
  const YAML::Mark mark = node.Mark();
  if (!visited.insert({mark.pos, static_cast<int>(node.Type()), node.size()}).second) return;
  if (node.IsSequence()) {
    size_t i = 0;
    for (const auto& item : node) {
      CheckDuplicateKeys(item, source, path + "[" + std::to_string(i) + "]", visited);
      ++i;
    }
    return;
  }
  std::map<std::string, YAML::Mark> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) continue;
    const std::string key = it->first.Scalar();
    const std::string key_path = path.empty() ? key : path + "." + key;
    const auto [first, inserted] = seen.emplace(key, it->first.Mark());
    if (!inserted) {
      throw MakeConfigError(Where(source, it->first), key_path,
                            "duplicate key (first given at line " + std::to_string(first->second.line + 1) + ")",
                            "each key once per mapping",
                            "remove one of the two: YAML would silently use only one of them");
    }
    CheckDuplicateKeys(it->second, source, key_path, visited);
  }
}

}  // namespace

YAML::Node LoadYamlString(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw MakeConfigError(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                              std::to_string(e.mark.column + 1),
                          "", "malformed YAML (" + e.msg + ")", "valid YAML",
                          "check indentation, colons and quotes near that position");
  }
  std::set<std::tuple<int, int, size_t>> visited;
  CheckDuplicateKeys(root, source, "", visited);
  return root;
}

YAML::Node LoadYamlFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    throw MakeConfigError(path.string(), "", "cannot open file", "a readable YAML file",
                          "check the path");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  YAML::Node root = LoadYamlString(ss.str(), path.string());
  if (!root.IsMap()) {
    throw MakeConfigError(path.string(), "", "the document is not a mapping",
                          "a YAML mapping of key: value lines",
                          "see the README of the folder for the schema");
  }
  return root;
}

namespace {

std::string LineColOfOffset(const std::string& text, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return std::to_string(line) + ":" + std::to_string(col);
}

// One open object or array while scanning JSON text for keys.
struct JsonFrame {
  bool object = false;
  bool expect_key = false;             // objects: the next string is a key
  size_t index = 0;                    // arrays: position of the current element
  std::string key;                     // objects: the current key
  std::map<std::string, size_t> keys;  // objects: key -> offset of its first occurrence
};

std::string JsonPath(const std::vector<JsonFrame>& stack) {
  std::string p;
  for (const auto& f : stack) {
    if (!f.object) p += "[" + std::to_string(f.index) + "]";
    else if (!f.key.empty()) p += (p.empty() ? "" : ".") + f.key;
  }
  return p;
}

}  // namespace

nlohmann::json ParseJsonStrict(const std::string& text, const std::string& file,
                               std::map<std::string, std::string>* top_level_key_where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw MakeConfigError(file + ":" + LineColOfOffset(text, e.byte == 0 ? 0 : e.byte - 1), "", "malformed JSON",
                          "valid JSON", e.what());
  }
  // The text is valid JSON: scan its tokens for object keys.
  std::vector<JsonFrame> stack;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{' || c == '[') {
      JsonFrame f;
      f.object = c == '{';
      f.expect_key = f.object;
      stack.push_back(std::move(f));
    } else if (c == '}' || c == ']') {
      if (!stack.empty()) stack.pop_back();
    } else if (c == ',') {
      if (!stack.empty()) {
        if (stack.back().object) stack.back().expect_key = true;
        else ++stack.back().index;
      }
    } else if (c == '"') {
      size_t end = i + 1;
      while (end < text.size() && text[end] != '"') end += text[end] == '\\' ? 2 : 1;
      if (!stack.empty() && stack.back().object && stack.back().expect_key) {
        JsonFrame& f = stack.back();
        const std::string key = nlohmann::json::parse(text.substr(i, end + 1 - i)).get<std::string>();
        f.key = key;
        f.expect_key = false;
        const auto [first, inserted] = f.keys.emplace(key, i);
        if (!inserted) {
          throw MakeConfigError(file + ":" + LineColOfOffset(text, i), JsonPath(stack),
                                "duplicate key (first given at " + LineColOfOffset(text, first->second) + ")",
                                "each key once per object",
                                "remove one of the two: a JSON reader would silently use only one of them");
        }
        if (top_level_key_where && stack.size() == 1) {
          (*top_level_key_where)[key] = file + ":" + LineColOfOffset(text, i);
        }
      }
      i = end;
    }
  }
  return j;
}

std::string Where(const std::string& file, const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return file;
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string DidYouMean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = 4;
  for (const auto& c : candidates) {
    const size_t d = EditDistance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

StrictMap::StrictMap(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {
  if (!node_.IsMap()) {
    throw MakeConfigError(Where(file_, node_), path_.empty() ? "<root>" : path_,
                          "is not a mapping", "a mapping of key: value lines", "");
  }
}

std::string StrictMap::WhereKey(const std::string& key) const {
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (it->first.as<std::string>() == key) return Where(file_, it->first);
  }
  return Where(file_, node_);
}

bool StrictMap::Has(const std::string& key) {
  known_.insert(key);
  return static_cast<bool>(node_[key]);
}

void StrictMap::Allow(const std::string& key) { known_.insert(key); }

YAML::Node StrictMap::Required(const std::string& key, const std::string& expected) {
  known_.insert(key);
  YAML::Node v = node_[key];
  if (!v) {
    // A misspelling of this key is the likeliest cause: name it.
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      const std::string present = it->first.as<std::string>();
      if (!known_.count(present) && EditDistance(present, key) <= 3) {
        throw MakeConfigError(Where(file_, it->first), KeyPath(present), "unknown key", "'" + key + "'",
                              "did you mean '" + key + "'?");
      }
    }
    throw MakeConfigError(Where(file_, node_), KeyPath(key), "missing required key", expected,
                          "add '" + key + ": <value>' to " + (path_.empty() ? "the file" : "'" + path_ + "'"));
  }
  return v;
}

double StrictMap::ToNumber(const YAML::Node& v, const std::string& key,
                           const std::string& unit_hint) const {
  const std::string where = Where(file_, v);
  if (!v.IsScalar()) {
    throw MakeConfigError(where, KeyPath(key), "is not a number", "a plain number", unit_hint);
  }
  const std::string s = v.Scalar();
  double d = 0;
  size_t used = 0;
  try {
    d = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size() || !std::isfinite(d)) {
    std::string hint = unit_hint;
    if (used > 0 && used < s.size()) {
      hint = "numbers carry no units: the unit is part of the key name" +
             (unit_hint.empty() ? std::string() : " (" + unit_hint + ")") + "; write just " +
             s.substr(0, used);
    }
    throw MakeConfigError(where, KeyPath(key), "'" + s + "' is not a number", "a plain finite number",
                          hint);
  }
  return d;
}

double StrictMap::Number(const std::string& key, const std::string& unit_hint) {
  return ToNumber(Required(key, "a number" + (unit_hint.empty() ? "" : " in " + unit_hint)), key,
                  unit_hint);
}

std::optional<double> StrictMap::OptionalNumber(const std::string& key, const std::string& unit_hint) {
  known_.insert(key);
  YAML::Node v = node_[key];
  if (!v || v.IsNull()) return std::nullopt;
  return ToNumber(v, key, unit_hint);
}

double StrictMap::PositiveNumber(const std::string& key, const std::string& unit_hint) {
  const double d = Number(key, unit_hint);
  if (!(d > 0)) {
    throw MakeConfigError(Where(file_, node_[key]), KeyPath(key), "must be positive, got " + node_[key].Scalar(),
                          "a number > 0" + (unit_hint.empty() ? "" : " in " + unit_hint),
                          "a device or model size cannot be zero or negative");
  }
  return d;
}

double StrictMap::Fraction(const std::string& key) {
  const double d = Number(key, "a fraction");
  if (!(d > 0 && d <= 1)) {
    throw MakeConfigError(Where(file_, node_[key]), KeyPath(key),
                          "efficiency " + node_[key].Scalar() + " is outside (0, 1]",
                          "a fraction in (0, 1]", "write 0.8 for 80%, not 80");
  }
  return d;
}

int64_t StrictMap::Integer(const std::string& key) {
  YAML::Node v = Required(key, "an integer");
  const double d = ToNumber(v, key, "");
  if (d != std::floor(d) || std::fabs(d) > 9.0e15) {
    throw MakeConfigError(Where(file_, v), KeyPath(key), "'" + v.Scalar() + "' is not an integer",
                          "a whole number", "");
  }
  return static_cast<int64_t>(d);
}

std::optional<int64_t> StrictMap::OptionalInteger(const std::string& key) {
  known_.insert(key);
  if (!node_[key] || node_[key].IsNull()) return std::nullopt;
  return Integer(key);
}

int64_t StrictMap::PositiveInteger(const std::string& key) {
  const int64_t v = Integer(key);
  if (v <= 0) {
    throw MakeConfigError(Where(file_, node_[key]), KeyPath(key), "must be positive, got " + std::to_string(v),
                          "an integer > 0", "");
  }
  return v;
}

std::string StrictMap::String(const std::string& key) {
  YAML::Node v = Required(key, "a string");
  if (!v.IsScalar()) {
    throw MakeConfigError(Where(file_, v), KeyPath(key), "is not a string", "a plain string", "");
  }
  return v.Scalar();
}

std::optional<std::string> StrictMap::OptionalString(const std::string& key) {
  known_.insert(key);
  if (!node_[key] || node_[key].IsNull()) return std::nullopt;
  return String(key);
}

std::optional<bool> StrictMap::OptionalBool(const std::string& key) {
  known_.insert(key);
  YAML::Node v = node_[key];
  if (!v || v.IsNull()) return std::nullopt;
  const std::string s = v.IsScalar() ? v.Scalar() : "";
  if (s == "true") return true;
  if (s == "false") return false;
  throw MakeConfigError(Where(file_, v), KeyPath(key), "'" + s + "' is not a boolean", "true or false", "");
}

StrictMap StrictMap::Map(const std::string& key) {
  YAML::Node v = Required(key, "a mapping");
  return StrictMap(v, file_, KeyPath(key));
}

std::optional<StrictMap> StrictMap::OptionalMap(const std::string& key) {
  known_.insert(key);
  if (!node_[key] || node_[key].IsNull()) return std::nullopt;
  return StrictMap(node_[key], file_, KeyPath(key));
}

YAML::Node StrictMap::Node(const std::string& key) { return Required(key, "a value"); }

void StrictMap::Finish() const {
  const std::vector<std::string> known(known_.begin(), known_.end());
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    const std::string k = it->first.as<std::string>();
    if (known_.count(k)) continue;
    const std::string guess = DidYouMean(k, known);
    std::string list;
    for (const auto& c : known) list += (list.empty() ? "" : ", ") + c;
    throw MakeConfigError(Where(file_, it->first), KeyPath(k), "unknown key",
                          "one of: " + list,
                          guess.empty() ? "remove it or check the schema in the folder's README"
                                        : "did you mean '" + guess + "'?");
  }
}

}  // namespace lifeline
