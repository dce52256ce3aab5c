#include "experiments/whatif.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "roofline/common/error.hpp"
#include "roofline/common/paths.hpp"
#include "roofline/common/yaml_util.hpp"
#include "roofline/eval/calibration.hpp"
#include "roofline/eval/evaluator.hpp"

namespace lifeline::whatif {
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

std::string Trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t");
  return s.substr(a, b - a + 1);
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

// A numeric field of DeviceSpec a device override can change, read and
// written through an accessor (the per-format linear efficiencies are array
// entries, which a pointer to member cannot name).
using DeviceField = double& (*)(DeviceSpec&);

template <size_t I>
double& LinearComputeField(DeviceSpec& d) {
  return d.linear_compute_efficiency[I];  // raw: 0 = follows efficiency.compute
}
template <size_t... I>
void AddLinearComputeFields(std::vector<DeviceField>& v, std::index_sequence<I...>) {
  (v.push_back(&LinearComputeField<I>), ...);
}

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

std::string FormatValue(double v) { return fmt::format("{:.12g}", v); }

}  // namespace

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
  return k;
}

Scope ScopeOfKey(const std::string& key, const std::string& arg) {
  if (Contains(DeviceKeys(), key)) return Scope::kDevice;
  if (Contains(ModelKeys(), key)) return Scope::kModel;
  if (Contains(PlanKeys(), key) || IsPlanRuleKey(key)) return Scope::kPlan;
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
    if (n > 1e8) throw MakeConfigError(o.arg, o.key, fmt::format("{:.0f} values", n), "at most 100,000,000 values per axis", "");
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
  for (const auto& [opt, v] : {std::pair<const char*, int64_t>{"--context", run.context}, {"--prompt", run.prompt},
                               {"--batch", run.batch}}) {
    if (v < 1) throw MakeConfigError(opt, opt + 2, "must be positive, got " + std::to_string(v), "an integer >= 1", "");
  }
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
          } else {
            SetPath(plan, {o.key.substr(5)}, 0, o.value, o.arg);
          }
          break;
        }
        case Scope::kRun:
          if (o.key == "context") run.context = ParsePositiveInt(o.value, o.key, o.arg);
          else if (o.key == "prompt") run.prompt = ParsePositiveInt(o.value, o.key, o.arg);
          else if (o.key == "batch") run.batch = ParsePositiveInt(o.value, o.key, o.arg);
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
    if (args.empty()) throw;
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

// ----- analysis --------------------------------------------------------------

namespace {

double Tps(const CompiledGraph& g, const DeviceSpec& d, int64_t ctx) { return 1.0 / g.StepSeconds(d, ctx); }

// d ln f / d ln x by a central difference on x's field.
double Elastic(double& field, const std::function<double()>& f) {
  const double x = field;
  if (!(x > 0)) return 0;
  const double h = 1e-3;
  field = x * (1 + h);
  const double up = f();
  field = x * (1 - h);
  const double down = f();
  field = x;
  return (std::log(up) - std::log(down)) / (std::log1p(h) - std::log1p(-h));
}

// Per-group compute-minus-memory time at a context.
std::vector<double> GroupMargins(const ModelGraph& g, const DeviceSpec& d, int64_t ctx,
                                 const std::vector<size_t>& group_of, size_t groups, double* step_margin) {
  const StepResult r = EvaluateStep(g, d, ctx);
  std::vector<double> m(groups, 0.0);
  for (size_t i = 0; i < r.ops.size(); ++i) m[group_of[i]] += r.ops[i].compute_s - r.ops[i].memory_s;
  if (step_margin) *step_margin = r.compute_s - r.memory_s;
  return m;
}

// Context nearest to `ctx` at which margin(c) changes sign (compute-bound
// means margin > 0); margin is evaluated by `f`.
std::optional<int64_t> SolveFlipContext(int64_t ctx, const std::function<double(int64_t)>& f) {
  const bool now = f(ctx) > 0;
  std::optional<int64_t> best;
  auto bisect = [&](int64_t lo, int64_t hi) {  // bound(lo) != bound(hi); returns first c with bound(hi)
    const bool hi_side = f(hi) > 0;
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      if ((f(mid) > 0) == hi_side) hi = mid;
      else lo = mid;
    }
    return hi;
  };
  // Upwards.
  for (int64_t prev = ctx, c = std::min(ctx * 2, kMaxFlipContext); prev < kMaxFlipContext;
       prev = c, c = std::min(c * 2, kMaxFlipContext)) {
    if ((f(c) > 0) != now) {
      best = bisect(prev, c);
      break;
    }
    if (c == kMaxFlipContext) break;
  }
  // Downwards (keep the nearer one by ratio).
  for (int64_t prev = ctx, c = std::max<int64_t>(ctx / 2, 1); prev > 1; prev = c, c = std::max<int64_t>(c / 2, 1)) {
    if ((f(c) > 0) != now) {
      const int64_t flip = bisect(c, prev);  // first context with the current bound
      if (!best || static_cast<double>(ctx) / flip < static_cast<double>(*best) / ctx) best = flip;
      break;
    }
    if (c == 1) break;
  }
  return best;
}

}  // namespace

PointAnalysis Analyze(const Setting& s, bool solve_prefill_prompt) {
  PointAnalysis a;
  const ModelGraph dg = BuildModelGraph(s.arch, s.plan, s.decode);
  const ModelGraph pg = BuildModelGraph(s.arch, s.plan, s.prefill);
  const CompiledGraph dc(dg), pc(pg);
  const DeviceSpec& d = s.device;
  const StepResult dr = EvaluateStep(dg, d, s.context);
  const StepResult pr = EvaluateStep(pg, d, s.context);
  const DecodeMetrics m = DecodeFromStep(dr.total_s, s.decode.batch);
  a.tps = m.tps;
  a.tpot_s = m.tpot_s;
  a.batch_tps = m.batch_tokens_per_s;
  a.ttft_s = pr.total_s;
  a.prefill_tokens_per_s = static_cast<double>(s.prompt * s.decode.batch) / pr.total_s;
  a.decode_compute_s = dr.compute_s;
  a.decode_memory_s = dr.memory_s;
  a.decode_overhead_s = dr.overhead_s;
  a.prefill_compute_s = pr.compute_s;
  a.prefill_memory_s = pr.memory_s;
  a.prefill_overhead_s = pr.overhead_s;
  a.decode_bound = dr.compute_s > dr.memory_s ? "compute" : "memory";
  a.prefill_bound = pr.compute_s > pr.memory_s ? "compute" : "memory";
  a.ridge_ops_per_byte = d.compute_ops_per_s / d.memory_bandwidth_bytes_per_s;
  a.effective_ridge_ops_per_byte =
      d.compute_efficiency * d.compute_ops_per_s / (d.memory_efficiency * d.memory_bandwidth_bytes_per_s);
  a.attention_ridge_ops_per_byte =
      d.attention_compute_efficiency * d.compute_ops_per_s / (d.memory_efficiency * d.memory_bandwidth_bytes_per_s);
  const double bw_gb = d.memory_bandwidth_bytes_per_s / 1e9;
  // Memory time scales as 1/bandwidth, compute time does not: the flip is where they meet.
  if (dr.compute_s > 0) a.step_flip_bandwidth_gb_per_s = bw_gb * dr.memory_s / dr.compute_s;
  if (pr.compute_s > 0) a.prefill_flip_bandwidth_gb_per_s = bw_gb * pr.memory_s / pr.compute_s;

  // Elasticities.
  DeviceSpec w = d;
  struct Knob {
    std::string key;
    double* field;
    double scale;  // YAML unit
  };
  std::vector<Knob> knobs = {{"memory_bandwidth_gb_per_s", &w.memory_bandwidth_bytes_per_s, 1e9},
                             {"int8_tops", &w.compute_ops_per_s, 1e12}};
  std::vector<DeviceParam> params = {DeviceParam::kMemoryEfficiency, DeviceParam::kComputeEfficiency,
                                     DeviceParam::kAttentionComputeEfficiency};
  if (s.arch.IsMoe()) {
    params.push_back(DeviceParam::kMoeExpertComputeInt2Efficiency);
    params.push_back(DeviceParam::kMoeExpertComputeInt4Efficiency);
  }
  params.push_back(DeviceParam::kDispatchOverhead);
  params.push_back(DeviceParam::kHeadDispatchOverhead);
  for (auto p : params) knobs.push_back({DeviceParamKey(p), &DeviceParamRef(w, p), 1.0});
  for (const auto& k : knobs) {
    Elasticity e;
    e.key = k.key;
    e.value = *k.field / k.scale;
    e.decode_tps = Elastic(*k.field, [&] { return Tps(dc, w, s.context); });
    e.prefill_tps = Elastic(*k.field, [&] { return 1.0 / pc.StepSeconds(w, s.context); });
    a.elasticities.push_back(e);
  }

  // Operator groups.
  std::map<std::string, size_t> index;
  std::vector<size_t> group_of(dg.order.size());
  for (size_t i = 0; i < dg.order.size(); ++i) {
    const OpNode& n = dg.graph[dg.order[i]];
    const std::string key = LayerPattern(n.name);
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, a.ops.size()).first;
      OpGroup g;
      g.name = key;
      g.kind = OpKindName(n.kind);
      g.format = n.format;
      a.ops.push_back(g);
    }
    group_of[i] = it->second;
    OpGroup& g = a.ops[it->second];
    const OpTiming& t = dr.ops[i];
    ++g.count;
    g.flops += t.flops;
    g.bytes += t.weight_bytes + t.act_bytes + t.kv_bytes;
    g.compute_s += t.compute_s;
    g.memory_s += t.memory_s;
    g.overhead_s += t.overhead_s;
    g.time_s += t.total_s;
    g.bound = g.bound.empty() ? (t.compute_bound ? "compute" : "memory")
              : g.bound == (t.compute_bound ? "compute" : "memory") ? g.bound
                                                                    : "mixed";
  }
  // Flip contexts: one shared evaluation per probed context.
  std::map<int64_t, std::pair<std::vector<double>, double>> memo;
  auto margins = [&](int64_t c) -> const std::pair<std::vector<double>, double>& {
    auto it = memo.find(c);
    if (it == memo.end()) {
      double step = 0;
      auto v = GroupMargins(dg, d, c, group_of, a.ops.size(), &step);
      it = memo.emplace(c, std::make_pair(std::move(v), step)).first;
    }
    return it->second;
  };
  for (size_t gi = 0; gi < a.ops.size(); ++gi) {
    OpGroup& g = a.ops[gi];
    g.share_pct = 100.0 * g.time_s / dr.total_s;
    g.intensity_ops_per_byte = g.bytes > 0 ? g.flops / g.bytes : 0;
    if (g.compute_s > 0 && g.memory_s > 0) g.flip_bandwidth_gb_per_s = bw_gb * g.memory_s / g.compute_s;
    g.flip_context_tokens = SolveFlipContext(s.context, [&](int64_t c) { return margins(c).first[gi]; });
  }
  a.step_flip_context_tokens = SolveFlipContext(s.context, [&](int64_t c) { return margins(c).second; });
  if (solve_prefill_prompt) {
    std::map<int64_t, double> pmemo;
    a.prefill_flip_prompt_tokens = SolveFlipContext(s.prompt, [&](int64_t p) {
      auto it = pmemo.find(p);
      if (it == pmemo.end()) {
        BuildOptions b = s.prefill;
        b.prompt_tokens = p;
        const StepResult r = EvaluateStep(BuildModelGraph(s.arch, s.plan, b), d, 0);
        it = pmemo.emplace(p, r.compute_s - r.memory_s).first;
      }
      return it->second;
    });
  }
  std::stable_sort(a.ops.begin(), a.ops.end(), [](const OpGroup& x, const OpGroup& y) { return x.time_s > y.time_s; });
  return a;
}

std::vector<reports::Table> AnalysisTables(const PointAnalysis& a, const Setting& s, size_t top_ops) {
  using reports::Cell;
  auto opt = [](const std::optional<double>& v, int prec) { return v ? Cell(*v, prec) : Cell("none"); };
  auto opt_ctx = [](const std::optional<int64_t>& v) {
    return v ? Cell::Int(*v) : Cell(fmt::format("none up to {}", kMaxFlipContext));
  };
  std::vector<reports::Table> out;
  reports::Table sum;
  sum.title = fmt::format("{} on {} ({:.6g} TOPS, {:.6g} GB/s), plan {} (KV {}), fusion {}, fidelity {}, batch {}, "
                          "context {}, prompt {}",
                          s.arch.name, s.device.name, s.device.compute_ops_per_s / 1e12,
                          s.device.memory_bandwidth_bytes_per_s / 1e9, s.plan.name, KvDtypeName(s.plan.kv_dtype),
                          s.fusion, s.fidelity, s.decode.batch, s.context, s.prompt);
  sum.columns = {"metric", "decode", "prefill"};
  sum.rows.push_back({"time_s (TPOT / TTFT)", Cell(a.tpot_s, 6), Cell(a.ttft_s, 6)});
  sum.rows.push_back({"tokens_per_s (per sequence / prompt tokens)", Cell(a.tps, 3), Cell(a.prefill_tokens_per_s, 1)});
  sum.rows.push_back({"tokens_per_s over the batch", Cell(a.batch_tps, 3), Cell()});
  sum.rows.push_back({"sum of compute_s", Cell(a.decode_compute_s, 6), Cell(a.prefill_compute_s, 6)});
  sum.rows.push_back({"sum of memory_s", Cell(a.decode_memory_s, 6), Cell(a.prefill_memory_s, 6)});
  sum.rows.push_back({"sum of overhead_s", Cell(a.decode_overhead_s, 6), Cell(a.prefill_overhead_s, 6)});
  sum.rows.push_back({"bound (sum compute vs sum memory)", a.decode_bound, a.prefill_bound});
  sum.rows.push_back({"flips bound at memory_bandwidth_gb_per_s", opt(a.step_flip_bandwidth_gb_per_s, 2),
                      opt(a.prefill_flip_bandwidth_gb_per_s, 2)});
  sum.rows.push_back({"flips bound at context / prompt (tokens)", opt_ctx(a.step_flip_context_tokens),
                      opt_ctx(a.prefill_flip_prompt_tokens)});
  sum.notes.push_back(fmt::format("ridge point {:.2f} ops/byte at peak; {:.2f} with the compute and memory "
                                  "efficiencies; {:.2f} for attention",
                                  a.ridge_ops_per_byte, a.effective_ridge_ops_per_byte, a.attention_ridge_ops_per_byte));
  sum.notes.push_back("a step is compute-bound when its summed compute time exceeds its summed memory time; the flip "
                      "bandwidth solves sum(compute) = sum(memory) exactly (memory time scales as 1/bandwidth); the "
                      "flip context is found by bisection");
  out.push_back(sum);

  reports::Table el;
  el.title = "Elasticities: d ln(throughput) / d ln(x), central difference of +-0.1%";
  el.columns = {"key", "value", "decode_tps", "prefill_tokens_per_s"};
  for (const auto& e : a.elasticities)
    el.rows.push_back({e.key, Cell(FormatValue(e.value)), Cell(e.decode_tps, 4), Cell(e.prefill_tps, 4)});
  el.notes.push_back("1.0 = throughput proportional to x; 0 = x does not matter here; negative for overheads");
  out.push_back(el);

  reports::Table ops;
  ops.title = fmt::format("Operators by share of the decode step (top {} of {})", std::min(top_ops, a.ops.size()),
                          a.ops.size());
  ops.columns = {"op", "kind", "count", "format", "time_s", "share_pct", "intensity_ops_per_byte", "bound",
                 "flip_bandwidth_gb_per_s", "flip_context_tokens"};
  for (size_t i = 0; i < a.ops.size() && i < top_ops; ++i) {
    const OpGroup& g = a.ops[i];
    ops.rows.push_back({g.name, g.kind, Cell::Int(g.count), g.format, Cell(g.time_s, 9), Cell(g.share_pct, 2),
                        Cell(g.intensity_ops_per_byte, 3), g.bound, opt(g.flip_bandwidth_gb_per_s, 2),
                        opt_ctx(g.flip_context_tokens)});
  }
  ops.notes.push_back(fmt::format("an operator is compute-bound when its intensity exceeds the ridge point "
                                  "({:.2f} ops/byte, attention {:.2f}); flip_bandwidth_gb_per_s is where its compute "
                                  "time equals its memory time",
                                  a.effective_ridge_ops_per_byte, a.attention_ridge_ops_per_byte));
  out.push_back(ops);
  return out;
}

// ----- sweeps ----------------------------------------------------------------

uint64_t GridSize(const std::vector<SweepAxis>& axes) {
  uint64_t n = 1;
  for (const auto& a : axes) n *= a.values.size();
  return n;
}

std::vector<std::string> SweepColumns(const std::vector<SweepAxis>& axes, const SweepOptions& o) {
  std::vector<std::string> c;
  for (const auto& a : axes) c.push_back(a.key);
  for (const char* m : {"tps", "tpot_s", "batch_tps", "ttft_s", "elasticity_bandwidth", "elasticity_tops"}) c.push_back(m);
  if (!o.baseline_plan.empty()) {
    c.push_back("tps_baseline");
    c.push_back("gain_pct");
  }
  if (!o.ceiling_plan.empty()) {
    c.push_back("tps_ceiling");
    c.push_back("capture_pct");
  }
  return c;
}

void RunSweep(const Scenario& scenario, const std::vector<Override>& fixed, const std::vector<SweepAxis>& axes,
              const SweepOptions& options,
              const std::function<void(const std::vector<size_t>&, const SweepMetrics&)>& row,
              const std::function<void(uint64_t, uint64_t)>& progress) {
  if (!options.ceiling_plan.empty() && options.baseline_plan.empty()) {
    throw MakeConfigError("--ceiling", options.ceiling_plan, "a ceiling needs a baseline",
                          "--baseline PLAN as well", "Capture% = (TPS - baseline) / (ceiling - baseline)");
  }
  const Setting base = scenario.Resolve(fixed);
  std::set<std::string> seen;
  std::vector<Scope> scope(axes.size());
  for (size_t i = 0; i < axes.size(); ++i) {
    scope[i] = ScopeOfKey(axes[i].key, axes[i].arg);
    if (!seen.insert(axes[i].key).second) {
      throw MakeConfigError(axes[i].arg, axes[i].key, "the key is swept twice", "each key in one --sweep", "");
    }
  }
  // Device axes: every value's resolved numeric fields (validated like the YAML).
  struct DeviceAxis {
    std::vector<DeviceField> fields;
    std::vector<std::vector<double>> values;  // [value][field]
  };
  std::vector<std::optional<DeviceAxis>> dev_axis(axes.size());
  std::vector<std::vector<int64_t>> ctx_values(axes.size());
  std::vector<size_t> graph_axes;
  int context_axis = -1;
  for (size_t i = 0; i < axes.size(); ++i) {
    const bool is_ctx = axes[i].key == "context";
    const bool is_dev = scope[i] == Scope::kDevice;
    std::vector<DeviceSpec> specs;
    for (const auto& v : axes[i].values) {
      std::vector<Override> ov = fixed;
      ov.push_back({axes[i].key, v, fmt::format("{} (value '{}')", axes[i].arg, v)});
      // Graph axes are validated by building the graph; device axes by the parser.
      const Setting s = scenario.Resolve(ov);
      if (is_dev) specs.push_back(s.device);
      if (is_ctx) ctx_values[i].push_back(s.context);
    }
    if (is_ctx) {
      context_axis = static_cast<int>(i);
    } else if (is_dev) {
      DeviceAxis da;
      DeviceSpec base_device = base.device;
      for (auto f : DeviceFields()) {
        for (auto& sp : specs) {
          if (f(sp) != f(base_device)) {
            da.fields.push_back(f);
            break;
          }
        }
      }
      for (auto& sp : specs) {
        std::vector<double> vals;
        for (auto f : da.fields) vals.push_back(f(sp));
        da.values.push_back(vals);
      }
      dev_axis[i] = da;
    } else {
      graph_axes.push_back(i);
    }
  }
  struct Graphs {
    std::unique_ptr<CompiledGraph> decode, prefill, baseline, ceiling;
    int64_t context = 0;
    int64_t batch = 1;
  };
  std::map<std::vector<size_t>, Graphs> cache;
  auto graphs_for = [&](const std::vector<size_t>& idx) -> Graphs& {
    std::vector<size_t> key;
    for (size_t gi : graph_axes) key.push_back(idx[gi]);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    std::vector<Override> ov = fixed;
    for (size_t gi : graph_axes) ov.push_back({axes[gi].key, axes[gi].values[idx[gi]], axes[gi].arg});
    const Setting s = scenario.Resolve(ov);
    Graphs g;
    g.decode = std::make_unique<CompiledGraph>(BuildModelGraph(s.arch, s.plan, s.decode));
    g.prefill = std::make_unique<CompiledGraph>(BuildModelGraph(s.arch, s.plan, s.prefill));
    // Baseline and ceiling differ from the plan in their weights only: they
    // keep its KV-cache dtype, so Gain% and Capture% compare like with like.
    auto reference = [&](const std::string& name) {
      QuantPlan p = ResolveQuantPlan(name, s.arch);
      p.kv_dtype = s.plan.kv_dtype;
      return std::make_unique<CompiledGraph>(BuildModelGraph(s.arch, p, s.decode));
    };
    if (!options.baseline_plan.empty()) g.baseline = reference(options.baseline_plan);
    if (!options.ceiling_plan.empty()) g.ceiling = reference(options.ceiling_plan);
    g.context = s.context;
    g.batch = s.decode.batch;
    return cache.emplace(key, std::move(g)).first->second;
  };

  DeviceSpec d = base.device;
  const uint64_t total = GridSize(axes);
  std::vector<size_t> idx(axes.size(), 0);
  SweepMetrics m;
  const uint64_t kProgressEvery = 1u << 14;
  for (uint64_t done = 0; done < total; ++done) {
    Graphs& g = graphs_for(idx);
    for (size_t i = 0; i < axes.size(); ++i) {
      if (!dev_axis[i]) continue;
      const auto& da = *dev_axis[i];
      for (size_t f = 0; f < da.fields.size(); ++f) da.fields[f](d) = da.values[idx[i]][f];
    }
    const int64_t ctx = context_axis >= 0 ? ctx_values[static_cast<size_t>(context_axis)][idx[static_cast<size_t>(context_axis)]]
                                          : g.context;
    const double step = g.decode->StepSeconds(d, ctx);
    m.tpot_s = step;
    m.tps = 1.0 / step;
    m.batch_tps = m.tps * static_cast<double>(g.batch);
    m.ttft_s = g.prefill->StepSeconds(d, ctx);
    m.elasticity_bandwidth = Elastic(d.memory_bandwidth_bytes_per_s, [&] { return 1.0 / g.decode->StepSeconds(d, ctx); });
    m.elasticity_tops = Elastic(d.compute_ops_per_s, [&] { return 1.0 / g.decode->StepSeconds(d, ctx); });
    if (g.baseline) {
      m.tps_baseline = 1.0 / g.baseline->StepSeconds(d, ctx);
      m.gain_pct = (m.tps / m.tps_baseline - 1.0) * 100.0;
    }
    if (g.ceiling) {
      m.tps_ceiling = 1.0 / g.ceiling->StepSeconds(d, ctx);
      m.capture_pct = (m.tps - m.tps_baseline) / (m.tps_ceiling - m.tps_baseline) * 100.0;
    }
    row(idx, m);
    if (progress && (done + 1) % kProgressEvery == 0) progress(done + 1, total);
    // Odometer: last axis fastest.
    for (size_t i = axes.size(); i-- > 0;) {
      if (++idx[i] < axes[i].values.size()) break;
      idx[i] = 0;
    }
  }
  if (progress) progress(total, total);
}

}  // namespace lifeline::whatif
