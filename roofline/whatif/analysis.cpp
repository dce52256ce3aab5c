// What-if analysis of one point: elasticities, bound flips, operators by share.

#include "roofline/whatif/whatif.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
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

// ----- analysis --------------------------------------------------------------

namespace {

double Tps(const CompiledGraph& g, const DeviceSpec& d, int64_t ctx) { return 1.0 / g.StepSeconds(d, ctx); }


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

namespace internal {

double Elastic(double& field, const std::function<double()>& f) {
  const double x = field;
  if (!(x > 0)) return 0;
  const double h = kElasticStep;
  field = x * (1 + h);
  const double up = f();
  field = x * (1 - h);
  const double down = f();
  field = x;
  return ElasticFromValues(up, down);
}

double ElasticFromValues(double up, double down) {
  return (std::log(up) - std::log(down)) / (std::log1p(kElasticStep) - std::log1p(-kElasticStep));
}

}  // namespace internal

}  // namespace lifeline::whatif
