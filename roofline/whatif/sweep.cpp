// What-if sweeps: a grid of overrides evaluated point by point, streamed to a row callback.

#include "roofline/whatif/whatif.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "common/error.hpp"
#include "roofline/eval/calibration.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/whatif/internal.hpp"

namespace lifeline::whatif {

using internal::DeviceField;
using internal::DeviceFields;
using internal::Elastic;

// ----- sweeps ----------------------------------------------------------------

uint64_t GridSize(const std::vector<SweepAxis>& axes) {
  uint64_t n = 1;
  for (const auto& a : axes) {
    const uint64_t k = a.values.size();
    if (k != 0 && n > std::numeric_limits<uint64_t>::max() / k) return std::numeric_limits<uint64_t>::max();
    n *= k;
  }
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
      // 0/0 when the ceiling gains nothing over the baseline: undefined.
      m.capture_pct = m.tps_ceiling == m.tps_baseline
                          ? std::numeric_limits<double>::quiet_NaN()
                          : (m.tps - m.tps_baseline) / (m.tps_ceiling - m.tps_baseline) * 100.0;
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
