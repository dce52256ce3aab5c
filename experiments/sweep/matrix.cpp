#include "experiments/sweep/matrix.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <set>

#include "experiments/sweep/sha256.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/yaml_util.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::sweep {

namespace fs = std::filesystem;
using nlohmann::json;

std::string CellKindName(CellKind k) {
  switch (k) {
    case CellKind::kThroughput: return "throughput";
    case CellKind::kRecovery: return "recovery";
    case CellKind::kMeasured: return "measured";
  }
  return "throughput";
}

CellKind ParseCellKind(const std::string& s) {
  if (s == "throughput") return CellKind::kThroughput;
  if (s == "recovery") return CellKind::kRecovery;
  if (s == "measured") return CellKind::kMeasured;
  throw InternalError("unknown cell kind '" + s + "' in the store");
}

const std::vector<std::string>& ThroughputAxes() {
  static const std::vector<std::string> axes = {"model", "device", "plan", "context", "fidelity", "fusion", "batch"};
  return axes;
}

const std::vector<std::string>& RecoveryKeys() {
  static const std::vector<std::string> keys = {
      "model", "tokenizer", "bits", "group", "scheme", "layers", "rank", "alpha", "dropout",
      "lora_targets", "init", "data", "data_skip", "samples", "sample_len", "temperature",
      "top_k", "walk_vocab", "gen_batch", "steps", "batch", "grad_accum", "lr", "warmup",
      "schedule", "clip", "weight_decay", "checkpoint_every", "seed", "device",
      "threads", "eval_text", "eval_limit", "eval_batch", "tasks", "task_limit",
      "loftq_iters", "deploy_plan", "method", "degrade", "noise_rel_l2", "noise_l2", "dtype",
      "bitflip_rate", "qat_ste"};
  return keys;
}

std::string CellId(const json& inputs) { return Sha256Hex(inputs.dump()).substr(0, 16); }

fs::path CellInputFile(const std::string& axis, const std::string& value) {
  std::error_code ec;
  if (fs::is_regular_file(value, ec)) return value;
  if (fs::is_directory(value, ec) && fs::is_regular_file(fs::path(value) / "config.json", ec)) {
    return fs::path(value) / "config.json";
  }
  if (axis == "model") return ModelZooDir() / (value + ".yaml");
  if (axis == "device") return HwspecDir() / (value + ".yaml");
  return {};
}

void CheckMatrixName(const std::string& name, const std::string& where, const std::string& key) {
  const bool plain = !name.empty() && name[0] != '.' && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  if (!plain) {
    throw MakeConfigError(where, key,
                          "'" + name + "' is not a plain name: the matrix name becomes the folder out/<name>/ of its "
                          "results and must stay inside it",
                          "letters, digits, '.', '_' and '-', not starting with '.' (no '/', no '..', not absolute)",
                          "rename it, e.g. 'name: my-sweep'; choose where results go with --store");
  }
}

namespace {

bool IsListKey(const std::string& key) { return key == "layers" || key == "lora_targets" || key == "tasks"; }

// A YAML scalar as JSON: true/false, an integer, a number (integral numbers
// become integers so 64 and 64.0 name the same cell), or a string.
json ScalarToJson(const YAML::Node& n) {
  const std::string s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted: always a string
  if (s == "true") return true;
  if (s == "false") return false;
  if (!s.empty()) {
    size_t used = 0;
    try {
      const long long v = std::stoll(s, &used);
      if (used == s.size()) return static_cast<int64_t>(v);
    } catch (const std::exception&) {
    }
    try {
      const double d = std::stod(s, &used);
      if (used == s.size() && std::isfinite(d)) {
        if (d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<int64_t>(d);
        return d;
      }
    } catch (const std::exception&) {
    }
  }
  return s;
}

json ValueToJson(const YAML::Node& n, const std::string& file, const std::string& key_path) {
  if (n.IsScalar()) return ScalarToJson(n);
  if (n.IsSequence()) {
    json a = json::array();
    for (const auto& e : n) {
      if (!e.IsScalar()) {
        throw MakeConfigError(Where(file, e), key_path, "nested value", "a scalar or a list of scalars", "");
      }
      a.push_back(ScalarToJson(e));
    }
    return a;
  }
  throw MakeConfigError(Where(file, n), key_path, n.IsMap() ? "is a mapping" : "is empty",
                        "a scalar or a list of scalars", "");
}

std::string JsonText(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// One swept value with where it was written.
struct Value {
  json v;
  std::string where;
};

// Values of an axis: a scalar is a one-value axis; a list-typed key needs a
// list of lists (a single list is one value).
std::vector<Value> AxisValues(const YAML::Node& n, const std::string& file, const std::string& key_path,
                              bool list_key) {
  std::vector<Value> out;
  if (n.IsSequence() && !(list_key && (n.size() == 0 || !n[0].IsSequence()))) {
    for (size_t i = 0; i < n.size(); ++i) {
      out.push_back({ValueToJson(n[i], file, fmt::format("{}[{}]", key_path, i)), Where(file, n[i])});
    }
    if (out.empty()) {
      throw MakeConfigError(Where(file, n), key_path, "empty axis: the product has no cells",
                            "at least one value", "remove the axis to use its default, or give it a value");
    }
  } else {
    out.push_back({ValueToJson(n, file, key_path), Where(file, n)});
  }
  return out;
}

std::vector<std::string> YamlStems(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Validates throughput axis values and resolves names (cached).
class ThroughputValidator {
 public:
  explicit ThroughputValidator(fs::path base_dir) : base_dir_(std::move(base_dir)) {}

  // Returns the value to store (paths relative to the matrix become absolute).
  json Check(const std::string& axis, const Value& val, const std::string& key_path) {
    const json& v = val.v;
    auto need_string = [&] {
      if (!v.is_string()) {
        throw MakeConfigError(val.where, key_path, "'" + JsonText(v) + "' is not a name", "a string", "");
      }
      return v.get<std::string>();
    };
    if (axis == "model") {
      const std::string s = Localize(need_string());
      if (!models_.count(s)) {
        try {
          models_.emplace(s, ResolveModelArch(s));
        } catch (const Error& e) {
          const std::string guess = DidYouMean(s, YamlStems(ModelZooDir()));
          throw MakeConfigError(val.where, key_path,
                                (fs::exists(s) ? "invalid model file '" : "unknown model '") + s + "' (" + e.what() +
                                    ")",
                                "a zoo name (" + Join(YamlStems(ModelZooDir())) + ") or a YAML/config.json path",
                                guess.empty() ? "" : "did you mean '" + guess + "'?");
        }
      }
      return s;
    }
    if (axis == "device") {
      const std::string s = Localize(need_string());
      if (!devices_.count(s)) {
        try {
          ResolveDeviceSpec(s);
          devices_.insert(s);
        } catch (const Error& e) {
          const std::string guess = DidYouMean(s, YamlStems(HwspecDir()));
          throw MakeConfigError(val.where, key_path,
                                (fs::is_regular_file(s) ? "invalid device file '" : "unknown device '") + s + "' (" +
                                    e.what() + ")",
                                "a name in hwspec/ (" + Join(YamlStems(HwspecDir())) + ") or a YAML path",
                                guess.empty() ? "" : "did you mean '" + guess + "'?");
        }
      }
      return s;
    }
    if (axis == "plan") {
      const std::string s = need_string();
      const auto presets = PresetPlanNames();
      if (std::find(presets.begin(), presets.end(), s) != presets.end()) return s;
      const std::string local = Localize(s);
      if (fs::is_regular_file(local)) {
        LoadQuantPlan(local);  // syntax and keys now; matching against each model at run time
        return local;
      }
      const std::string guess = DidYouMean(s, presets);
      throw MakeConfigError(val.where, key_path, "unknown plan '" + s + "'",
                            "a preset (" + Join(presets) + ") or a plan YAML path",
                            guess.empty() ? "paths are relative to the matrix file" : "did you mean '" + guess + "'?");
    }
    if (axis == "context" || axis == "batch") {
      if (!v.is_number_integer() || v.get<int64_t>() <= 0) {
        throw MakeConfigError(val.where, key_path, "'" + JsonText(v) + "' is not a positive integer",
                              axis == "context" ? "tokens attended by the decode step, e.g. 4096" : "sequences, e.g. 1",
                              "");
      }
      // The same run limits as explain and whatif.
      if (axis == "context") CheckRunValue(v.get<int64_t>(), kMaxContextTokens, val.where, key_path, "tokens");
      else CheckRunValue(v.get<int64_t>(), kMaxBatch, val.where, key_path, "sequences");
      return v;
    }
    if (axis == "fidelity" || axis == "fusion") {
      const std::string s = need_string();
      try {
        if (axis == "fidelity") ParseFidelity(s); else ParseFusionMode(s);
      } catch (const Error&) {
        throw MakeConfigError(val.where, key_path, "unknown " + axis + " '" + s + "'",
                              axis == "fidelity" ? "paper or exact" : "paper or none", "");
      }
      return s;
    }
    throw InternalError("unhandled axis " + axis);
  }

  // SHA-256 of the files a cell's model, device and plan are read from.
  json Digests(const std::map<std::string, json>& a) {
    json d = json::object();
    for (const char* axis : {"model", "device", "plan"}) {
      const auto it = a.find(axis);
      if (it == a.end() || !it->second.is_string()) continue;
      const std::string value = it->second.get<std::string>();
      const std::string key = std::string(axis) + "|" + value;
      auto cached = digests_.find(key);
      if (cached == digests_.end()) {
        const fs::path f = CellInputFile(axis, value);
        std::error_code ec;
        cached = digests_.emplace(key, !f.empty() && fs::is_regular_file(f, ec) ? Sha256File(f) : "").first;
      }
      if (!cached->second.empty()) d[axis] = cached->second;
    }
    return d;
  }

 private:
  // A value naming a file beside the matrix becomes an absolute path.
  std::string Localize(const std::string& s) const {
    if (s.find('/') == std::string::npos && fs::path(s).extension().empty()) return s;  // a name
    const fs::path p(s);
    if (p.is_absolute()) return s;
    std::error_code ec;
    if (fs::exists(base_dir_ / p, ec)) return fs::weakly_canonical(base_dir_ / p).string();
    return s;
  }
  fs::path base_dir_;
  std::map<std::string, std::string> digests_;  // "axis|value" -> SHA-256 of its file
  std::map<std::string, ModelArch> models_;
  std::set<std::string> devices_;
};

struct Section {
  std::string name;                         // "throughput" or "recovery"
  std::vector<std::string> axis_order;      // swept keys in product order
  std::map<std::string, std::vector<Value>> axes;
  std::map<std::string, Value> fixed;       // recovery only
  struct Rule {
    std::map<std::string, std::vector<Value>> keys;
    std::string where;
    std::string path;
    int hits = 0;
  };
  std::vector<Rule> include, exclude;
  std::map<std::string, std::string> report;  // label -> template
};

using Assignment = std::map<std::string, json>;

bool RuleMatches(const Section::Rule& r, const Assignment& a) {
  for (const auto& [k, vals] : r.keys) {
    auto it = a.find(k);
    if (it == a.end()) return false;
    bool any = false;
    for (const auto& v : vals) any = any || v.v == it->second;
    if (!any) return false;
  }
  return true;
}

void ForEachProduct(const std::vector<std::string>& order,
                    const std::map<std::string, std::vector<Value>>& axes, Assignment base,
                    const std::function<void(const Assignment&)>& fn, size_t i = 0) {
  if (i == order.size()) {
    fn(base);
    return;
  }
  const auto it = axes.find(order[i]);
  if (it == axes.end()) {
    ForEachProduct(order, axes, base, fn, i + 1);
    return;
  }
  for (const auto& v : it->second) {
    base[order[i]] = v.v;
    ForEachProduct(order, axes, base, fn, i + 1);
  }
}

std::string Substitute(const std::string& tmpl, const Assignment& a, const std::string& where,
                       const std::string& key_path) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '{') {
      out += tmpl[i];
      continue;
    }
    const size_t close = tmpl.find('}', i);
    if (close == std::string::npos) {
      throw MakeConfigError(where, key_path, "unclosed '{' in '" + tmpl + "'", "{recipe key} placeholders", "");
    }
    const std::string key = tmpl.substr(i + 1, close - i - 1);
    const auto it = a.find(key);
    if (it == a.end()) {
      throw MakeConfigError(where, key_path, "placeholder {" + key + "} names no recipe key this cell sets",
                            "a key under recovery.axes or recovery.fixed", "");
    }
    out += JsonText(it->second);
    i = close;
  }
  return out;
}

// Reads include/exclude rules.
std::vector<Section::Rule> ReadRules(StrictMap& sec, const std::string& key, const std::vector<std::string>& known,
                                     const std::string& file) {
  std::vector<Section::Rule> rules;
  if (!sec.Has(key)) return rules;
  const YAML::Node list = sec.Node(key);
  if (!list.IsSequence()) {
    throw MakeConfigError(Where(file, list), sec.KeyPath(key), "is not a list",
                          "a list of mappings {axis: value or [values]}", "");
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = fmt::format("{}[{}]", sec.KeyPath(key), i);
    if (!list[i].IsMap() || list[i].size() == 0) {
      throw MakeConfigError(Where(file, list[i]), path, "is not a non-empty mapping",
                            "{axis: value or [values], ...}", "");
    }
    Section::Rule r;
    r.where = Where(file, list[i]);
    r.path = path;
    for (auto it = list[i].begin(); it != list[i].end(); ++it) {
      const std::string k = it->first.as<std::string>();
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        const std::string guess = DidYouMean(k, known);
        throw MakeConfigError(Where(file, it->first), path + "." + k, "unknown axis", "one of: " + Join(known),
                              guess.empty() ? "" : "did you mean '" + guess + "'?");
      }
      r.keys[k] = AxisValues(it->second, file, path + "." + k, IsListKey(k));
    }
    rules.push_back(std::move(r));
  }
  return rules;
}

Section ReadSection(StrictMap sec, bool recovery, const std::string& file) {
  Section s;
  s.name = recovery ? "recovery" : "throughput";
  const std::vector<std::string>& known = recovery ? RecoveryKeys() : ThroughputAxes();
  auto read_keyed = [&](StrictMap m, auto&& on_key) {
    for (auto it = m.node().begin(); it != m.node().end(); ++it) {
      const std::string k = it->first.as<std::string>();
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        const std::string guess = DidYouMean(k, known);
        throw MakeConfigError(Where(file, it->first), m.KeyPath(k), recovery ? "unknown recipe key" : "unknown axis",
                              "one of: " + Join(known), guess.empty() ? "" : "did you mean '" + guess + "'?");
      }
      on_key(k, it->second, m.KeyPath(k));
    }
  };
  if (recovery) {
    if (auto fixed = sec.OptionalMap("fixed")) {
      read_keyed(*fixed, [&](const std::string& k, const YAML::Node& v, const std::string& path) {
        s.fixed[k] = Value{ValueToJson(v, file, path), Where(file, v)};
      });
    }
  }
  std::optional<StrictMap> axes = recovery ? sec.OptionalMap("axes") : std::optional<StrictMap>(sec.Map("axes"));
  if (axes) {
    read_keyed(*axes, [&](const std::string& k, const YAML::Node& v, const std::string& path) {
      if (s.fixed.count(k)) {
        throw MakeConfigError(Where(file, v), path, "is both fixed and swept", "the key in one of recovery.fixed "
                              "and recovery.axes", "remove it from one of them");
      }
      s.axes[k] = AxisValues(v, file, path, IsListKey(k));
    });
  }
  if (recovery) {
    for (const auto& k : known) {
      if (s.axes.count(k)) s.axis_order.push_back(k);
    }
    if (s.axes.empty() && s.fixed.empty()) {
      throw MakeConfigError(sec.WhereSelf(), "recovery", "has neither axes nor fixed keys",
                            "recovery.axes and/or recovery.fixed with recipe keys", "");
    }
    if (auto rep = sec.OptionalMap("report")) {
      for (const char* k : {"model", "plan"}) {
        if (auto v = rep->OptionalString(k)) s.report[k] = *v;
      }
      rep->Finish();
    }
  } else {
    s.axis_order = known;
    for (const char* required : {"model", "device", "plan", "context"}) {
      if (!s.axes.count(required)) {
        throw MakeConfigError(axes->WhereSelf(), axes->KeyPath(required), "missing axis",
                              "a list of values", std::string("add '") + required + ": [...]'");
      }
    }
  }
  s.include = ReadRules(sec, "include", known, file);
  s.exclude = ReadRules(sec, "exclude", known, file);
  sec.Finish();
  return s;
}

uint64_t SaturatingMul(uint64_t a, uint64_t b) { return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b; }
uint64_t SaturatingAdd(uint64_t a, uint64_t b) { return b > UINT64_MAX - a ? UINT64_MAX : a + b; }

// The axes an include rule expands over: its named keys take the rule's
// values (appended to the product order when not swept), the others every
// axis value.
std::pair<std::map<std::string, std::vector<Value>>, std::vector<std::string>> IncludeAxes(const Section& s,
                                                                                          const Section::Rule& inc) {
  std::map<std::string, std::vector<Value>> axes = s.axes;
  std::vector<std::string> order = s.axis_order;
  for (const auto& [k, vals] : inc.keys) {
    axes[k] = vals;
    if (std::find(order.begin(), order.end(), k) == order.end()) order.push_back(k);
  }
  return {std::move(axes), std::move(order)};
}

// Cells a section expands to before exclude rules, counted without expanding
// them; `shape` gets the product written out ("model 2 x device 3 ...").
uint64_t SectionSize(const Section& s, std::string* shape) {
  auto product = [&](const std::vector<std::string>& order, const std::map<std::string, std::vector<Value>>& axes,
                     std::string* text) {
    uint64_t n = 1;
    for (const auto& k : order) {
      const auto it = axes.find(k);
      if (it == axes.end()) continue;
      n = SaturatingMul(n, it->second.size());
      if (text) *text += fmt::format("{}{} {}", text->empty() ? "" : " x ", k, it->second.size());
    }
    return n;
  };
  uint64_t total = product(s.axis_order, s.axes, shape);
  for (const auto& inc : s.include) {
    const auto [axes, order] = IncludeAxes(s, inc);
    total = SaturatingAdd(total, product(order, axes, nullptr));
  }
  if (!s.include.empty()) *shape += fmt::format(", plus {} include rule(s)", s.include.size());
  return total;
}

// Expands a section into cells: product, excludes, includes.
std::vector<SweepCell> Expand(Section& s, const std::string& file, ThroughputValidator* tv) {
  const bool recovery = s.name == "recovery";
  // Validate and normalize throughput values; fill defaults.
  if (!recovery) {
    const std::map<std::string, json> defaults = {{"fidelity", "exact"}, {"fusion", "paper"}, {"batch", 1}};
    for (const auto& [k, d] : defaults) {
      if (!s.axes.count(k)) s.axes[k] = {Value{d, file}};
    }
    auto check_all = [&](std::map<std::string, std::vector<Value>>& keys, const std::string& prefix) {
      for (auto& [k, vals] : keys) {
        for (size_t i = 0; i < vals.size(); ++i) vals[i].v = tv->Check(k, vals[i], fmt::format("{}.{}[{}]", prefix, k, i));
      }
    };
    check_all(s.axes, "throughput.axes");
    for (auto& r : s.include) check_all(r.keys, r.path);
    for (auto& r : s.exclude) check_all(r.keys, r.path);
  }
  Assignment fixed;
  for (const auto& [k, v] : s.fixed) fixed[k] = v.v;

  std::vector<SweepCell> cells;
  std::set<std::string> ids;
  auto make = [&](const Assignment& a) {
    SweepCell c;
    c.kind = recovery ? CellKind::kRecovery : CellKind::kThroughput;
    if (recovery) {
      c.inputs = {{"kind", "recovery"}, {"recipe", json(a)}};
      json labels = json::object();
      for (const auto& [label, tmpl] : s.report) labels[label] = Substitute(tmpl, a, file, "recovery.report." + label);
      c.labels = labels;
    } else {
      c.inputs = json(a);
      c.inputs["kind"] = "throughput";
      c.inputs["input_sha256"] = tv->Digests(a);
      c.labels = json::object();
    }
    c.canonical = c.inputs.dump();
    c.id = CellId(c.inputs);
    return c;
  };
  ForEachProduct(s.axis_order, s.axes, fixed, [&](const Assignment& a) {
    for (auto& r : s.exclude) {
      if (RuleMatches(r, a)) {
        ++r.hits;
        return;
      }
    }
    SweepCell c = make(a);
    if (ids.insert(c.id).second) cells.push_back(std::move(c));
  });
  for (const auto& inc : s.include) {
    const auto [axes, order] = IncludeAxes(s, inc);
    ForEachProduct(order, axes, fixed, [&](const Assignment& a) {
      for (const auto& ex : s.exclude) {
        if (RuleMatches(ex, a)) {
          throw MakeConfigError(inc.where, inc.path, "conflicts with " + ex.path + " (" + ex.where +
                                "): a cell both included and excluded", "include and exclude rules that do not overlap",
                                "narrow one of the two rules");
        }
      }
      SweepCell c = make(a);
      if (ids.insert(c.id).second) cells.push_back(std::move(c));
    });
  }
  for (const auto& ex : s.exclude) {
    if (ex.hits == 0) {
      throw MakeConfigError(ex.where, ex.path, "matches no cell of the product", "a rule naming existing axis values",
                            "check the values against " + s.name + ".axes, or remove the rule");
    }
  }
  if (cells.empty()) {
    throw MakeConfigError(file, s.name, "empty product: every cell is excluded", "at least one cell",
                          "loosen the exclude rules");
  }
  return cells;
}

// Applies preset `name`: its sections' axes/fixed keys replace the base's,
// include/exclude/report replace wholesale.
YAML::Node ApplyPreset(const YAML::Node& root, const std::string& file, const std::string& name) {
  YAML::Node out = YAML::Clone(root);
  const YAML::Node presets = root["presets"];
  std::vector<std::string> names;
  if (presets && presets.IsMap()) {
    for (auto it = presets.begin(); it != presets.end(); ++it) names.push_back(it->first.as<std::string>());
  }
  if (!presets || !presets.IsMap() || !presets[name]) {
    const std::string guess = DidYouMean(name, names);
    throw MakeConfigError(file, "presets." + name, "unknown preset",
                          names.empty() ? "a matrix with a presets: section" : "one of: " + Join(names),
                          guess.empty() ? "" : "did you mean '" + guess + "'?");
  }
  StrictMap p(presets[name], file, "presets." + name);
  for (const char* sec : {"throughput", "recovery"}) {
    auto ps = p.OptionalMap(sec);
    if (!ps) continue;
    if (!out[sec]) {
      throw MakeConfigError(ps->WhereSelf(), ps->KeyPath(""), std::string("the matrix has no '") + sec + "' section",
                            "a preset that changes existing sections", "");
    }
    YAML::Node target = out[sec];
    for (auto it = ps->node().begin(); it != ps->node().end(); ++it) {
      const std::string k = it->first.as<std::string>();
      ps->Allow(k);
      if ((k == "axes" || k == "fixed") && it->second.IsMap()) {
        if (!target[k]) target[k] = YAML::Node(YAML::NodeType::Map);
        YAML::Node t = target[k];
        for (auto kv = it->second.begin(); kv != it->second.end(); ++kv) t[kv->first.as<std::string>()] = kv->second;
      } else {
        target[k] = it->second;  // include / exclude / report replace; unknown keys fail in ReadSection
      }
    }
  }
  p.Finish();
  return out;
}

}  // namespace

Matrix ParseMatrix(const YAML::Node& root_in, const std::string& file, const std::string& preset) {
  const YAML::Node root = preset.empty() ? root_in : ApplyPreset(root_in, file, preset);
  StrictMap top(root, file);
  Matrix m;
  m.file = file;
  m.preset = preset;
  if (auto name = top.OptionalString("name")) {
    m.name = *name;
    CheckMatrixName(m.name, Where(file, root["name"]), "name");
  } else {
    m.name = fs::path(file).stem().string();
    CheckMatrixName(m.name, file, "<file name>");
  }
  m.description = top.OptionalString("description").value_or("");
  top.Allow("presets");
  ThroughputValidator tv(file.empty() ? fs::current_path() : fs::absolute(fs::path(file)).parent_path());
  std::optional<Section> thr, rec;
  if (auto t = top.OptionalMap("throughput")) thr = ReadSection(*t, false, file);
  if (auto r = top.OptionalMap("recovery")) rec = ReadSection(*r, true, file);
  top.Finish();
  if (!thr && !rec) {
    throw MakeConfigError(Where(file, root), "<root>", "no cells", "a 'throughput:' and/or 'recovery:' section",
                          "see experiments/paper.yaml");
  }
  // Refuse a product too big to hold before expanding it.
  uint64_t total = 0;
  std::string shape;
  for (const auto* sec : {thr ? &*thr : nullptr, rec ? &*rec : nullptr}) {
    if (!sec) continue;
    std::string sec_shape;
    total = SaturatingAdd(total, SectionSize(*sec, &sec_shape));
    shape += (shape.empty() ? "" : "; ") + sec->name + ": " + sec_shape;
  }
  if (total > kMaxMatrixCells) {
    throw MakeConfigError(file, thr && rec ? "throughput/recovery" : thr ? "throughput" : "recovery",
                          fmt::format("{} cells before exclude rules ({}){}, more than the limit of {} cells per "
                                      "matrix",
                                      total == UINT64_MAX ? std::string("over 1.8e19") : std::to_string(total), shape,
                                      preset.empty() ? "" : " with preset " + preset, kMaxMatrixCells),
                          fmt::format("at most {} cells", kMaxMatrixCells),
                          "split the matrix into several files or presets (they may share one --store)");
  }
  if (thr) {
    auto cells = Expand(*thr, file, &tv);
    m.cells.insert(m.cells.end(), cells.begin(), cells.end());
  }
  if (rec) {
    auto cells = Expand(*rec, file, &tv);
    m.cells.insert(m.cells.end(), cells.begin(), cells.end());
  }
  return m;
}

Matrix LoadMatrix(const fs::path& path, const std::string& preset) {
  return ParseMatrix(LoadYamlFile(path), path.string(), preset);
}

}  // namespace lifeline::sweep
