#include "roofline/whatif/whatif.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "common/paths.hpp"
#include "common/yaml_util.hpp"
#include "roofline/eval/calibration.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/whatif/internal.hpp"

namespace lifeline::whatif {

using internal::DeviceField;
using internal::DeviceFields;
namespace {

const std::vector<std::string>& DeviceKeys() {
  // The spec's own keys, then every fittable parameter (calibration's key
  // table: efficiencies, per-format linear efficiencies, overheads).
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v = {"name", "description", "int8_tops", "memory_bandwidth_gb_per_s",
                                  "memory_capacity_gb"};
    for (DeviceParam p : AllDeviceParams()) v.push_back(DeviceParamKey(p));
    return v;
  }();
  return k;
}
const std::vector<std::string>& ModelKeys() {
  static const std::vector<std::string> k = {
      "model.name", "model.model_type", "model.hidden_size", "model.intermediate_size", "model.num_hidden_layers",
      "model.num_attention_heads", "model.num_key_value_heads", "model.head_dim", "model.vocab_size",
      "model.max_position_embeddings", "model.tie_word_embeddings", "model.attention_bias", "model.mlp_bias",
      "model.rms_norm_eps", "model.rope_theta", "model.hidden_act", "model.num_local_experts",
      "model.num_experts_per_tok", "model.sliding_window"};
  return k;
}
const std::vector<std::string>& PlanKeys() {
  static const std::vector<std::string> k = {"plan.name", "plan.kv_cache_dtype"};
  return k;
}
const std::vector<std::string>& PlanRuleFields() {
  static const std::vector<std::string> k = {"pattern", "bits", "group_size", "metadata", "format"};
  return k;
}
const std::vector<std::string>& RunKeys() {
  static const std::vector<std::string> k = {"context", "prompt", "batch", "fusion", "fidelity"};
  return k;
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

bool IsDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// plan.rules.N.field -> (N, field)
bool IsPlanRuleKey(const std::string& key, size_t* index = nullptr, std::string* field = nullptr) {
  const auto parts = Split(key, '.');
  if (parts.size() != 4 || parts[0] != "plan" || parts[1] != "rules" || !IsDigits(parts[2]) ||
      !Contains(PlanRuleFields(), parts[3]))
    return false;
  if (index) *index = std::stoul(parts[2]);
  if (field) *field = parts[3];
  return true;
}

// plan.adapters.N.field -> (N, field): a LoRA adapter of the plan's `adapters:`.
bool IsPlanAdapterKey(const std::string& key, size_t* index = nullptr, std::string* field = nullptr) {
  static const std::vector<std::string> fields = {"pattern", "rank", "dtype", "mode"};
  const auto parts = Split(key, '.');
  if (parts.size() != 4 || parts[0] != "plan" || parts[1] != "adapters" || !IsDigits(parts[2]) ||
      !Contains(fields, parts[3]))
    return false;
  if (index) *index = std::stoul(parts[2]);
  if (field) *field = parts[3];
  return true;
}

// Parses a number the way the YAML parser does (no units), naming the argument.
double ParseNumber(const std::string& text, const std::string& key, const std::string& arg) {
  size_t used = 0;
  double d = 0;
  try {
    d = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(d)) {
    throw MakeConfigError(arg, key, "'" + text + "' is not a number", "a plain finite number",
                          used > 0 ? "numbers carry no units: the unit is part of the key name; write just " +
                                         text.substr(0, used)
                                   : "");
  }
  return d;
}

int64_t ParsePositiveInt(const std::string& text, const std::string& key, const std::string& arg) {
  const double d = ParseNumber(text, key, arg);
  if (d != std::floor(d) || d < 1 || d > 9.0e15) {
    throw MakeConfigError(arg, key, "'" + text + "' is not a positive integer", "a whole number >= 1", "");
  }
  return static_cast<int64_t>(d);
}

// Sets node[a][b]... = value, creating maps on the way; `arg` names errors.
void SetPath(YAML::Node node, const std::vector<std::string>& parts, size_t i, const std::string& value,
             const std::string& arg) {
  if (!node.IsMap() && !node.IsNull()) {
    throw MakeConfigError(arg, parts[i - 1], "is not a mapping", "a key path into mappings", "");
  }
  if (i + 1 == parts.size()) {
    node[parts[i]] = YAML::Node(value);
    return;
  }
  YAML::Node child = node[parts[i]];
  SetPath(child, parts, i + 1, value, arg);
}

YAML::Node PlanToNode(const QuantPlan& p) {
  YAML::Node n;
  n["name"] = p.name;
  n["kv_cache_dtype"] = KvDtypeName(p.kv_dtype);
  for (const auto& r : p.rules) {
    YAML::Node rn;
    rn["pattern"] = r.pattern;
    if (r.format.ggml) {  // a ggml layout (gguf-* presets): its own key, not bits/group_size
      rn["format"] = GgmlLayout(*r.format.ggml).name;
      n["rules"].push_back(rn);
      continue;
    }
    rn["bits"] = r.format.bits;
    if (r.format.Quantized()) {
      rn["group_size"] = r.format.group_size;
      rn["metadata"] = r.format.metadata == QuantMetadata::kScaleBf16          ? "scale_bf16"
                       : r.format.metadata == QuantMetadata::kScaleBf16ZeroBf16 ? "scale_bf16_zero_bf16"
                                                                                : "scale_bf16_zero_packed";
    }
    n["rules"].push_back(rn);
  }
  return n;
}

YAML::Node ModelToNode(const ModelArch& a) {
  YAML::Node n;
  n["name"] = a.name;
  n["model_type"] = a.model_type;
  n["hidden_size"] = a.hidden_size;
  n["intermediate_size"] = a.intermediate_size;
  n["num_hidden_layers"] = a.num_hidden_layers;
  n["num_attention_heads"] = a.num_attention_heads;
  n["num_key_value_heads"] = a.num_key_value_heads;
  n["head_dim"] = a.head_dim;
  n["vocab_size"] = a.vocab_size;
  if (a.max_position_embeddings > 0) n["max_position_embeddings"] = a.max_position_embeddings;
  n["tie_word_embeddings"] = a.tie_word_embeddings ? "true" : "false";
  n["attention_bias"] = a.attention_bias ? "true" : "false";
  n["mlp_bias"] = a.mlp_bias ? "true" : "false";
  n["rms_norm_eps"] = a.rms_norm_eps;
  n["rope_theta"] = a.rope_theta;
  n["hidden_act"] = a.hidden_act;
  if (a.IsMoe()) {
    n["num_local_experts"] = a.num_local_experts;
    n["num_experts_per_tok"] = a.num_experts_per_tok;
  }
  if (a.sliding_window > 0) n["sliding_window"] = a.sliding_window;
  for (auto t : a.layer_types) n["layer_types"].push_back(t == AttentionKind::kFull ? "full_attention" : "sliding_attention");
  return n;
}

template <size_t I>
double& LinearComputeField(DeviceSpec& d) {
  return d.linear_compute_efficiency[I];  // raw: 0 = follows efficiency.compute
}
template <size_t... I>
void AddLinearComputeFields(std::vector<DeviceField>& v, std::index_sequence<I...>) {
  (v.push_back(&LinearComputeField<I>), ...);
}


}  // namespace

namespace internal {
const std::vector<DeviceField>& DeviceFields() {
  static const std::vector<DeviceField> f = [] {
    std::vector<DeviceField> v = {
        [](DeviceSpec& d) -> double& { return d.compute_ops_per_s; },
        [](DeviceSpec& d) -> double& { return d.memory_bandwidth_bytes_per_s; },
        [](DeviceSpec& d) -> double& { return d.memory_capacity_bytes; },
        [](DeviceSpec& d) -> double& { return d.memory_efficiency; },
        [](DeviceSpec& d) -> double& { return d.compute_efficiency; },
        [](DeviceSpec& d) -> double& { return d.attention_compute_efficiency; },
        [](DeviceSpec& d) -> double& { return d.moe_expert_compute_int2_efficiency; },
        [](DeviceSpec& d) -> double& { return d.moe_expert_compute_int3_efficiency; },
        [](DeviceSpec& d) -> double& { return d.moe_expert_compute_int4_efficiency; },
        [](DeviceSpec& d) -> double& { return d.moe_expert_compute_int8_efficiency; },
        [](DeviceSpec& d) -> double& { return d.dispatch_overhead_s; },
        [](DeviceSpec& d) -> double& { return d.head_dispatch_overhead_s; }};
    AddLinearComputeFields(v, std::make_index_sequence<kLinearFormatCount>{});
    return v;
  }();
  return f;
}
}  // namespace internal

std::string FormatValue(double v) { return fmt::format("{:.12g}", v); }

std::string LayerPattern(const std::string& name) {
  if (name.rfind("layers.", 0) != 0) return name;
  const size_t dot = name.find('.', 7);
  if (dot == std::string::npos || !IsDigits(name.substr(7, dot - 7))) return name;
  return "layers.*" + name.substr(dot);
}

std::vector<std::string> KnownKeys() {
  std::vector<std::string> k = DeviceKeys();
  for (const auto* v : {&ModelKeys(), &PlanKeys(), &RunKeys()}) k.insert(k.end(), v->begin(), v->end());
  for (const auto& f : PlanRuleFields()) k.push_back("plan.rules.N." + f);
  for (const char* f : {"pattern", "rank", "dtype", "mode"}) k.push_back(std::string("plan.adapters.N.") + f);
  return k;
}

Scope ScopeOfKey(const std::string& key, const std::string& arg) {
  if (Contains(DeviceKeys(), key)) return Scope::kDevice;
  if (Contains(ModelKeys(), key)) return Scope::kModel;
  if (Contains(PlanKeys(), key) || IsPlanRuleKey(key) || IsPlanAdapterKey(key)) return Scope::kPlan;
  if (Contains(RunKeys(), key)) return Scope::kRun;
  std::vector<std::string> cands = KnownKeys();
  for (const auto& f : PlanRuleFields()) cands.push_back("plan.rules.0." + f);
  std::string hint;
  if (Contains(ModelKeys(), "model." + key)) {
    hint = "did you mean 'model." + key + "'? model keys take the prefix 'model.'";
  } else if (Contains(PlanKeys(), "plan." + key)) {
    hint = "did you mean 'plan." + key + "'? plan keys take the prefix 'plan.'";
  } else if (key.rfind("device.", 0) == 0 && Contains(DeviceKeys(), key.substr(7))) {
    hint = "did you mean '" + key.substr(7) + "'? device keys are written as in the hwspec YAML, without a prefix";
  } else {
    const std::string guess = DidYouMean(key, cands);
    hint = guess.empty() ? "device keys as in hwspec/*.yaml; model.<key>; plan.kv_cache_dtype or "
                           "plan.rules.N.{bits,group_size,metadata,pattern,format}; context, prompt, batch, fusion, fidelity"
                         : "did you mean '" + guess + "'?";
  }
  std::string list;
  for (const auto& c : KnownKeys()) list += (list.empty() ? "" : ", ") + c;
  throw MakeConfigError(arg, key, "unknown key", "one of: " + list, hint);
}

Override ParseSetArg(const std::string& text, const std::string& option) {
  const std::string arg = option + " " + text;
  const size_t eq = text.find('=');
  if (eq == std::string::npos) {
    throw MakeConfigError(arg, text, "no '=' in the argument", "key=value", "e.g. " + option +
                          " memory_bandwidth_gb_per_s=150");
  }
  Override o{Trim(text.substr(0, eq)), Trim(text.substr(eq + 1)), arg};
  if (o.key.empty()) throw MakeConfigError(arg, "", "empty key", "key=value", "");
  ScopeOfKey(o.key, arg);
  if (o.value.empty()) throw MakeConfigError(arg, o.key, "empty value", "key=value with a value", "");
  return o;
}

SweepAxis ParseSweepArg(const std::string& text) {
  const Override o = ParseSetArg(text, "--sweep");
  SweepAxis ax{o.key, {}, o.arg};
  const auto colon = Split(o.value, ':');
  if (colon.size() > 1) {
    if (colon.size() != 3) {
      throw MakeConfigError(o.arg, o.key, "'" + o.value + "' is not a range", "start:stop:step or v1,v2,...",
                            "e.g. 50:400:10 (inclusive)");
    }
    const double a = ParseNumber(Trim(colon[0]), o.key, o.arg);
    const double b = ParseNumber(Trim(colon[1]), o.key, o.arg);
    const double s = ParseNumber(Trim(colon[2]), o.key, o.arg);
    if (s == 0) throw MakeConfigError(o.arg, o.key, "step is zero", "a non-zero step", "");
    if ((b - a) / s < 0) {
      throw MakeConfigError(o.arg, o.key, "the range is empty: stop " + Trim(colon[1]) + " is on the wrong side of start " +
                                              Trim(colon[0]) + " for step " + Trim(colon[2]),
                            "start:stop:step with (stop - start) / step >= 0",
                            fmt::format("write {}:{}:{}", Trim(colon[0]), Trim(colon[1]), FormatValue(-s)));
    }
    const double n = std::floor((b - a) / s + 1e-9) + 1;
    if (n > static_cast<double>(kMaxSweepAxisValues)) {
      throw MakeConfigError(o.arg, o.key,
                            fmt::format("the range has {:.0f} values, beyond the limit of {} values per axis", n,
                                        kMaxSweepAxisValues),
                            fmt::format("at most {} values per axis", kMaxSweepAxisValues),
                            "use a larger step or a narrower range");
    }
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
      double v = a + static_cast<double>(i) * s;
      if (std::fabs(v) < 1e-12 * std::fabs(s)) v = 0;
      ax.values.push_back(FormatValue(v));
    }
  } else {
    for (const auto& v : Split(o.value, ',')) {
      const std::string t = Trim(v);
      if (t.empty()) throw MakeConfigError(o.arg, o.key, "empty value in the list", "v1,v2,... with no empty item", "");
      ax.values.push_back(t);
    }
  }
  if (ax.values.empty()) throw MakeConfigError(o.arg, o.key, "no values", "at least one value", "");
  return ax;
}

// ----- Scenario --------------------------------------------------------------

Scenario::Scenario(const RunSpec& run) : run_(run) {
  CheckRunValue(run.context, kMaxContextTokens, "--context", "context", "tokens");
  CheckRunValue(run.prompt, kMaxPromptTokens, "--prompt", "prompt", "tokens");
  CheckRunValue(run.batch, kMaxBatch, "--batch", "batch", "sequences");
  // Device: the YAML node of the file ResolveDeviceSpec would load.
  const DeviceSpec base = ResolveDeviceSpec(run.device);  // validates the name, did-you-mean
  std::filesystem::path dp(run.device);
  if (!std::filesystem::is_regular_file(dp)) dp = HwspecDir() / (run.device + ".yaml");
  device_file_ = dp.string();
  device_node_ = LoadYamlFile(dp);
  (void)base;
  // Model: zoo/YAML file as its node; config.json converted to the zoo schema.
  const ModelArch arch = ResolveModelArch(run.model);
  std::filesystem::path mp(run.model);
  if (std::filesystem::is_directory(mp)) mp /= "config.json";
  if (!std::filesystem::is_regular_file(mp)) mp = ModelZooDir() / (run.model + ".yaml");
  model_file_ = mp.string();
  model_default_name_ = arch.name;
  if (mp.extension() == ".json" || !std::filesystem::is_regular_file(mp)) model_node_ = ModelToNode(arch);
  else model_node_ = LoadYamlFile(mp);
  // Plan: the YAML file's node, or the preset written in the same schema.
  const QuantPlan plan = ResolveQuantPlan(run.plan, arch);
  plan_default_name_ = plan.name;
  if (std::filesystem::is_regular_file(run.plan)) {
    plan_file_ = run.plan;
    plan_node_ = LoadYamlFile(run.plan);
  } else {
    plan_file_ = "preset " + run.plan;
    plan_node_ = PlanToNode(plan);
  }
}

Setting Scenario::ResolveUnchecked(const std::vector<Override>& overrides, const std::string& args) const {
  YAML::Node dev = YAML::Clone(device_node_), model = YAML::Clone(model_node_), plan = YAML::Clone(plan_node_);
  RunSpec run = run_;
  bool graph_inputs_changed = false;
  try {
    for (const auto& o : overrides) {
      switch (ScopeOfKey(o.key, o.arg)) {
        case Scope::kDevice: SetPath(dev, Split(o.key, '.'), 0, o.value, o.arg); break;
        case Scope::kModel:
          graph_inputs_changed = true;
          SetPath(model, {o.key.substr(6)}, 0, o.value, o.arg);
          break;
        case Scope::kPlan: {
          graph_inputs_changed = true;
          size_t idx = 0;
          std::string field;
          if (IsPlanRuleKey(o.key, &idx, &field)) {
            YAML::Node rules = plan["rules"];
            if (!rules.IsSequence() || idx >= rules.size()) {
              throw MakeConfigError(o.arg, o.key, fmt::format("the plan has {} rules", rules.IsSequence() ? rules.size() : 0),
                                    fmt::format("a rule index 0..{}", rules.IsSequence() ? int(rules.size()) - 1 : -1),
                                    "`lifeline whatif --plan ... ` lists the plan's rules in its summary");
            }
            rules[idx][field] = YAML::Node(o.value);
          } else if (IsPlanAdapterKey(o.key, &idx, &field)) {
            YAML::Node adapters = plan["adapters"];
            const size_t n = adapters.IsSequence() ? adapters.size() : 0;
            if (idx >= n) {
              throw MakeConfigError(o.arg, o.key, fmt::format("the plan has {} adapters", n),
                                    n ? fmt::format("an adapter index 0..{}", n - 1) : "a plan with an adapters: list",
                                    "adapters are declared in a plan YAML (`adapters:`, roofline/README.md); "
                                    "--set changes their pattern, rank, dtype or mode");
            }
            adapters[idx][field] = YAML::Node(o.value);
          } else {
            SetPath(plan, {o.key.substr(5)}, 0, o.value, o.arg);
          }
          break;
        }
        case Scope::kRun:
          if (o.key == "context") {
            run.context = ParsePositiveInt(o.value, o.key, o.arg);
            CheckRunValue(run.context, kMaxContextTokens, o.arg, o.key, "tokens");
          } else if (o.key == "prompt") {
            run.prompt = ParsePositiveInt(o.value, o.key, o.arg);
            CheckRunValue(run.prompt, kMaxPromptTokens, o.arg, o.key, "tokens");
          } else if (o.key == "batch") {
            run.batch = ParsePositiveInt(o.value, o.key, o.arg);
            CheckRunValue(run.batch, kMaxBatch, o.arg, o.key, "sequences");
          }
          else if (o.key == "fusion") run.fusion = o.value;
          else if (o.key == "fidelity") run.fidelity = o.value;
          if (o.key != "context") graph_inputs_changed = true;
          break;
      }
    }
    Setting s;
    s.device = ParseDeviceSpec(dev, device_file_);
    s.arch = ParseModelArch(model, model_file_, model_default_name_);
    s.plan = ParseQuantPlan(plan, plan_file_, plan_default_name_);
    s.plan.source = plan_file_;
    s.fusion = run.fusion;
    s.fidelity = run.fidelity;
    s.context = run.context;
    s.prompt = run.prompt;
    s.decode.fusion = ParseFusionMode(run.fusion);
    s.decode.fidelity = ParseFidelity(run.fidelity);
    s.decode.batch = run.batch;
    s.decode.phase = Phase::kDecode;
    s.prefill = s.decode;
    s.prefill.phase = Phase::kPrefill;
    s.prefill.prompt_tokens = run.prompt;
    if (graph_inputs_changed) (void)BuildModelGraph(s.arch, s.plan, s.decode);  // plan rules vs model
    return s;
  } catch (const ConfigError& e) {
    if (args.empty() || std::string(e.what()).rfind(args, 0) == 0) throw;  // already names the arguments
    throw ConfigError(args + ": " + e.what());
  }
}

Setting Scenario::Resolve(const std::vector<Override>& overrides) const {
  if (overrides.size() == 1) return ResolveUnchecked(overrides, overrides[0].arg);
  for (const auto& o : overrides) ResolveUnchecked({o}, o.arg);
  std::string all;
  for (const auto& o : overrides) all += (all.empty() ? "" : ", ") + o.arg;
  return ResolveUnchecked(overrides, overrides.size() > 1 ? all : "");
}

}  // namespace lifeline::whatif
