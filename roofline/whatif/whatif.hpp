#pragma once
// What-if analysis for hardware architects: one setting (model, device, plan,
// fusion, fidelity, batch, context, prompt) with `--set key=value` overrides
// validated exactly like the YAML they change, cartesian sweeps over any keys,
// and the analysis of one point (dominant operators, bounds, ridge point,
// elasticities, the bandwidth or context at which an operator or the step
// flips from memory- to compute-bound, prefill vs decode).
//
// Keys (README "lifeline whatif"):
//   device  — the hwspec YAML key path, unprefixed: `memory_bandwidth_gb_per_s`,
//             `int8_tops`, `efficiency.memory`, `overhead.dispatch_s`, ...
//   model   — `model.` + the model_zoo key: `model.hidden_size`, `model.num_hidden_layers`
//   plan    — `plan.` + the plan YAML key: `plan.kv_cache_dtype`,
//             `plan.rules.N.bits` / `.group_size` / `.metadata` / `.pattern`
//   run     — `context`, `prompt`, `batch`, `fusion`, `fidelity`
// Pure functions: nothing here prints or writes files.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::whatif {

// What the command line names before any override.
struct RunSpec {
  std::string model = "qwen3-4b";   // zoo name, YAML or config.json
  std::string device = "device_a";  // hwspec name or YAML
  std::string plan = "w4w2-gateup"; // preset or plan YAML
  std::string fusion = "paper";     // none or paper
  std::string fidelity = "exact";   // exact (the true architecture) or paper
  int64_t context = 4096;           // attended context in tokens (decode)
  int64_t prompt = 1024;            // prompt tokens (prefill / TTFT)
  int64_t batch = 1;                // sequences per step
};

enum class Scope { kDevice, kModel, kPlan, kRun };

// One `--set key=value` (also one value of a sweep axis).
struct Override {
  std::string key;    // as written: "efficiency.memory", "model.hidden_size"
  std::string value;  // as written: "0.7"
  std::string arg;    // the argument for error messages: "--set efficiency.memory=0.7"
};

// One `--sweep` axis.
struct SweepAxis {
  std::string key;
  std::vector<std::string> values;  // normalised text of each value, in order
  std::string arg;                  // "--sweep memory_bandwidth_gb_per_s=50:400:10"
};

// Every key a --set/--sweep may name (device keys unprefixed).
std::vector<std::string> KnownKeys();
// Scope of a key; unknown keys throw ConfigError naming `arg`, with a
// did-you-mean hint.
Scope ScopeOfKey(const std::string& key, const std::string& arg);

// "key=value" -> Override (key checked, value validated later by Resolve).
Override ParseSetArg(const std::string& arg, const std::string& option = "--set");
// "key=start:stop:step" (inclusive, numeric) or "key=v1,v2,...".
SweepAxis ParseSweepArg(const std::string& arg);

// A fully resolved setting.
struct Setting {
  ModelArch arch;
  QuantPlan plan;
  DeviceSpec device;
  BuildOptions decode;   // phase decode
  BuildOptions prefill;  // phase prefill with prompt tokens
  int64_t context = 0;   // attended context (decode)
  int64_t prompt = 0;    // prompt tokens (prefill)
  std::string fusion, fidelity;
};

// The loaded inputs as YAML nodes; overrides are applied to copies and parsed
// by the same parsers as the files.
class Scenario {
 public:
  explicit Scenario(const RunSpec& run);
  // Applies `overrides` in order. Each is first validated alone against the
  // base (so an error names its argument); then all together (an error then
  // names every argument involved). Builds the graphs once to validate plan
  // rules against the model.
  Setting Resolve(const std::vector<Override>& overrides) const;
  const RunSpec& run() const { return run_; }

 private:
  Setting ResolveUnchecked(const std::vector<Override>& overrides, const std::string& args) const;

  RunSpec run_;
  YAML::Node device_node_, model_node_, plan_node_;
  std::string device_file_, model_file_, plan_file_;
  std::string model_default_name_, plan_default_name_;
};

// ----- analysis of one point --------------------------------------------------

struct Elasticity {
  std::string key;            // device key the derivative is taken against
  double value = 0;           // current value of the key (YAML units)
  double decode_tps = 0;      // d ln(decode TPS) / d ln(x)
  double prefill_tps = 0;     // d ln(prompt / TTFT) / d ln(x)
};

struct OpGroup {
  std::string name;           // "layers.*.mlp.gate_proj"
  std::string kind, format;
  int count = 0;              // operators folded into this row
  double flops = 0, bytes = 0;  // at this context, summed over the group
  double intensity_ops_per_byte = 0;  // flops / bytes
  double compute_s = 0, memory_s = 0, overhead_s = 0, time_s = 0;
  double share_pct = 0;       // of the decode step
  std::string bound;          // memory, compute or mixed
  // Bandwidth at which compute time equals memory time (all else fixed); none
  // when the group does no compute.
  std::optional<double> flip_bandwidth_gb_per_s;
  // Context c at which the group changes bound: bound(c - 1) != bound(c), the
  // crossing nearest to the current context (searched 1..kMaxFlipContext);
  // none when it never does.
  std::optional<int64_t> flip_context_tokens;
};

inline constexpr int64_t kMaxFlipContext = int64_t{1} << 24;

struct PointAnalysis {
  double tps = 0, tpot_s = 0, batch_tps = 0;       // decode
  double ttft_s = 0, prefill_tokens_per_s = 0;     // prefill of `prompt` tokens
  double decode_compute_s = 0, decode_memory_s = 0, decode_overhead_s = 0;
  double prefill_compute_s = 0, prefill_memory_s = 0, prefill_overhead_s = 0;
  std::string decode_bound, prefill_bound;  // by sum of compute vs sum of memory time
  double ridge_ops_per_byte = 0;            // peak ops/s / peak bytes/s
  double effective_ridge_ops_per_byte = 0;  // with compute and memory efficiencies
  double attention_ridge_ops_per_byte = 0;  // with the attention compute efficiency
  // Whole decode step: bandwidth / context at which sum(compute) = sum(memory).
  std::optional<double> step_flip_bandwidth_gb_per_s;
  std::optional<int64_t> step_flip_context_tokens;
  // Prefill: bandwidth at which sum(compute) = sum(memory), and the prompt
  // length p at which the bound changes (bound(p - 1) != bound(p)).
  std::optional<double> prefill_flip_bandwidth_gb_per_s;
  std::optional<int64_t> prefill_flip_prompt_tokens;
  std::vector<Elasticity> elasticities;
  std::vector<OpGroup> ops;  // by decode time, largest first
};

// `solve_prefill_prompt` rebuilds the prefill graph for a bisection over the
// prompt length (~40 builds); figures that do not print it skip it.
PointAnalysis Analyze(const Setting& s, bool solve_prefill_prompt = true);
// A number as the what-if tables and sweep axes write it (12 significant digits).
std::string FormatValue(double v);

// "layers.12.mlp.gate_proj" -> "layers.*.mlp.gate_proj"
std::string LayerPattern(const std::string& name);

// ----- sweeps ----------------------------------------------------------------

struct SweepOptions {
  std::string baseline_plan;  // adds tps_baseline and gain_pct (e.g. "w4")
  std::string ceiling_plan;   // adds tps_ceiling and capture_pct (e.g. "w2"; needs a baseline)
  // Both keep the swept plan's KV-cache dtype: only the weights differ.
};

// One grid point's results.
struct SweepMetrics {
  double tps = 0, tpot_s = 0, batch_tps = 0, ttft_s = 0;
  double elasticity_bandwidth = 0;  // d ln TPS / d ln memory_bandwidth
  double elasticity_tops = 0;       // d ln TPS / d ln int8_tops
  double tps_baseline = 0, gain_pct = 0, tps_ceiling = 0, capture_pct = 0;
  // capture_pct is NaN (undefined) where tps_ceiling == tps_baseline, e.g.
  // when the baseline and ceiling plans are the same.
  double footprint_bytes = 0;  // ComputeFootprint of the decode step at this context and batch
  bool fits = true;            // footprint <= memory_capacity_gb (true when the device states none)
};

// Number of grid points (product of axis sizes); UINT64_MAX when the product
// does not fit.
uint64_t GridSize(const std::vector<SweepAxis>& axes);

// Sweep limits (roofline/README.md): a start:stop:step axis expands to at most
// kMaxSweepAxisValues values; a grid beyond kDefaultMaxSweepPoints points is
// refused unless the user raises the limit (`whatif --max-points`): its CSV
// would take gigabytes.
inline constexpr uint64_t kMaxSweepAxisValues = 10'000'000;
inline constexpr uint64_t kDefaultMaxSweepPoints = 10'000'000;

// Column names of a sweep row: one per axis key, then the metrics.
std::vector<std::string> SweepColumns(const std::vector<SweepAxis>& axes, const SweepOptions& o);

// Evaluates the cartesian grid (first axis slowest). Every axis value is
// validated first (errors name the --sweep argument). Graphs are built once
// per combination of model/plan/run keys; device and context axes only
// re-evaluate. `row(index, metrics)` gets each point's axis value indices;
// `progress(done, total)` is called every few thousand points.
void RunSweep(const Scenario& scenario, const std::vector<Override>& fixed, const std::vector<SweepAxis>& axes,
              const SweepOptions& options,
              const std::function<void(const std::vector<size_t>& index, const SweepMetrics& m)>& row,
              const std::function<void(uint64_t done, uint64_t total)>& progress = {});

}  // namespace lifeline::whatif
