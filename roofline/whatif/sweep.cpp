// What-if sweeps: a grid of overrides evaluated point by point, streamed to a row callback.

#include "roofline/whatif/whatif.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "common/error.hpp"
#include "roofline/eval/calibration.hpp"
#include "roofline/eval/context_profile.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/eval/footprint.hpp"
#include "roofline/whatif/internal.hpp"

namespace lifeline::whatif {

using internal::DeviceField;
using internal::DeviceFields;

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
  c.push_back("footprint_bytes");
  c.push_back("fits");
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
  std::vector<int64_t> ctx_values;
  std::vector<size_t> graph_axes;
  int context_axis = -1;
  for (size_t i = 0; i < axes.size(); ++i) {
    const bool is_ctx = axes[i].key == "context";
    const bool is_dev = scope[i] == Scope::kDevice;
    auto value_override = [&](const std::string& v) {
      std::vector<Override> ov = fixed;
      ov.push_back({axes[i].key, v, fmt::format("{} (value '{}')", axes[i].arg, v)});
      return ov;
    };
    if (is_ctx) {
      // A context changes no input of the graphs: each value is read here
      // (plain digits within the run limit), anything else goes through
      // Resolve and its error; then the smallest and largest values are
      // resolved with the fixed overrides like every other axis value.
      context_axis = static_cast<int>(i);
      for (const auto& v : axes[i].values) {
        int64_t c = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), c);
        const bool plain = ec == std::errc() && end == v.data() + v.size() && v.size() <= 9 && v[0] != '-';
        if (!plain || c < 1 || c > kMaxContextTokens) c = scenario.Resolve(value_override(v)).context;
        ctx_values.push_back(c);
      }
      const auto [lo, hi] = std::minmax_element(ctx_values.begin(), ctx_values.end());
      for (auto it : {lo, hi}) {
        (void)scenario.Resolve(value_override(axes[i].values[static_cast<size_t>(it - ctx_values.begin())]));
      }
      continue;
    }
    std::vector<DeviceSpec> specs;
    for (const auto& v : axes[i].values) {
      // Graph axes are validated by building the graph; device axes by the parser.
      const Setting s = scenario.Resolve(value_override(v));
      if (is_dev) specs.push_back(s.device);
    }
    if (is_dev) {
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
  // One compiled graph per (model, plan, run) combination, checked against the
  // operator-by-operator evaluation at the contexts where a context-parametric
  // form can first go wrong; a graph that fails keeps its ModelGraph and is
  // evaluated operator by operator.
  struct Checked {
    std::unique_ptr<CompiledGraph> compiled;
    std::unique_ptr<ModelGraph> reference;  // set when the compiled form does not match
  };
  struct Graphs {
    Checked decode, prefill, baseline, ceiling;
    std::optional<FootprintProfile> footprint;  // of the decode graph
    int64_t context = 0;
    int64_t batch = 1;
  };
  std::vector<int64_t> probe_extra;
  if (!ctx_values.empty()) {
    probe_extra.push_back(*std::min_element(ctx_values.begin(), ctx_values.end()));
    probe_extra.push_back(*std::max_element(ctx_values.begin(), ctx_values.end()));
  }
  auto check = [&](ModelGraph&& mg, const DeviceSpec& dev) {
    Checked c;
    c.compiled = std::make_unique<CompiledGraph>(mg);
    if (!CompiledMatchesReference(mg, *c.compiled, dev, ProbeContexts(mg, probe_extra), nullptr)) {
      c.reference = std::make_unique<ModelGraph>(std::move(mg));
    }
    return c;
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
    ModelGraph decode = BuildModelGraph(s.arch, s.plan, s.decode);
    g.footprint.emplace(decode);
    g.decode = check(std::move(decode), s.device);
    g.prefill = check(BuildModelGraph(s.arch, s.plan, s.prefill), s.device);
    // Baseline and ceiling differ from the plan in their weights only: they
    // keep its KV-cache dtype, so Gain% and Capture% compare like with like.
    auto reference = [&](const std::string& name) {
      QuantPlan p = ResolveQuantPlan(name, s.arch);
      p.kv_dtype = s.plan.kv_dtype;
      return check(BuildModelGraph(s.arch, p, s.decode), s.device);
    };
    if (!options.baseline_plan.empty()) g.baseline = reference(options.baseline_plan);
    if (!options.ceiling_plan.empty()) g.ceiling = reference(options.ceiling_plan);
    g.context = s.context;
    g.batch = s.decode.batch;
    return cache.emplace(key, std::move(g)).first->second;
  };

  // Each graph folded on the current device (and on the device with bandwidth
  // and TOPS moved by the elasticity step): refolded only when the graph or a
  // device value changes, so a context axis costs only the context terms.
  struct Folded {
    ContextProfile decode, bw_up, bw_down, tops_up, tops_down, baseline, ceiling;
    double ttft_s = 0;
    bool elastic_bw = false, elastic_tops = false;
  } f;
  auto fold = [](ContextProfile& p, const Checked& c, const DeviceSpec& dev) {
    if (c.reference) p.UseReference(*c.reference, dev);
    else p.Compile(*c.compiled, dev);
  };
  auto fold_all = [&](const Graphs& g, const DeviceSpec& dev) {
    fold(f.decode, g.decode, dev);
    ContextProfile prefill;
    fold(prefill, g.prefill, dev);
    f.ttft_s = prefill.StepSeconds(g.context);
    const double h = internal::kElasticStep;
    DeviceSpec w = dev;
    f.elastic_bw = dev.memory_bandwidth_bytes_per_s > 0;
    if (f.elastic_bw) {
      w.memory_bandwidth_bytes_per_s = dev.memory_bandwidth_bytes_per_s * (1 + h);
      fold(f.bw_up, g.decode, w);
      w.memory_bandwidth_bytes_per_s = dev.memory_bandwidth_bytes_per_s * (1 - h);
      fold(f.bw_down, g.decode, w);
      w.memory_bandwidth_bytes_per_s = dev.memory_bandwidth_bytes_per_s;
    }
    f.elastic_tops = dev.compute_ops_per_s > 0;
    if (f.elastic_tops) {
      w.compute_ops_per_s = dev.compute_ops_per_s * (1 + h);
      fold(f.tops_up, g.decode, w);
      w.compute_ops_per_s = dev.compute_ops_per_s * (1 - h);
      fold(f.tops_down, g.decode, w);
    }
    if (g.baseline.compiled) fold(f.baseline, g.baseline, dev);
    if (g.ceiling.compiled) fold(f.ceiling, g.ceiling, dev);
  };

  DeviceSpec d = base.device;
  const uint64_t total = GridSize(axes);
  std::vector<size_t> idx(axes.size(), 0);
  std::vector<size_t> folded_idx;  // the graph and device axes' indices `f` was folded at
  const Graphs* folded_graphs = nullptr;
  SweepMetrics m;
  const uint64_t kProgressEvery = 1u << 14;
  for (uint64_t done = 0; done < total; ++done) {
    Graphs& g = graphs_for(idx);
    bool refold = folded_graphs != &g || folded_idx.size() != idx.size();
    for (size_t i = 0; i < axes.size() && !refold; ++i) {
      refold = static_cast<int>(i) != context_axis && idx[i] != folded_idx[i];
    }
    if (refold) {
      for (size_t i = 0; i < axes.size(); ++i) {
        if (!dev_axis[i]) continue;
        const auto& da = *dev_axis[i];
        for (size_t k = 0; k < da.fields.size(); ++k) da.fields[k](d) = da.values[idx[i]][k];
      }
      fold_all(g, d);
      folded_graphs = &g;
      folded_idx = idx;
    }
    const int64_t ctx = context_axis >= 0 ? ctx_values[idx[static_cast<size_t>(context_axis)]] : g.context;
    const double step = f.decode.StepSeconds(ctx);
    m.tpot_s = step;
    m.tps = 1.0 / step;
    m.batch_tps = m.tps * static_cast<double>(g.batch);
    m.ttft_s = f.ttft_s;
    m.elasticity_bandwidth =
        f.elastic_bw ? internal::ElasticFromValues(1.0 / f.bw_up.StepSeconds(ctx), 1.0 / f.bw_down.StepSeconds(ctx))
                     : 0.0;
    m.elasticity_tops = f.elastic_tops ? internal::ElasticFromValues(1.0 / f.tops_up.StepSeconds(ctx),
                                                                      1.0 / f.tops_down.StepSeconds(ctx))
                                       : 0.0;
    if (g.baseline.compiled) {
      m.tps_baseline = 1.0 / f.baseline.StepSeconds(ctx);
      m.gain_pct = (m.tps / m.tps_baseline - 1.0) * 100.0;
    }
    if (g.ceiling.compiled) {
      m.tps_ceiling = 1.0 / f.ceiling.StepSeconds(ctx);
      // 0/0 when the ceiling gains nothing over the baseline: undefined.
      m.capture_pct = m.tps_ceiling == m.tps_baseline
                          ? std::numeric_limits<double>::quiet_NaN()
                          : (m.tps - m.tps_baseline) / (m.tps_ceiling - m.tps_baseline) * 100.0;
    }
    m.footprint_bytes = g.footprint->At(ctx).total_bytes;
    m.fits = d.memory_capacity_bytes <= 0 || m.footprint_bytes <= d.memory_capacity_bytes;
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
