#include "roofline/eval/calibration.hpp"

#include <Eigen/Dense>
#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <utility>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/yaml_util.hpp"
#include "roofline/eval/evaluator.hpp"

namespace lifeline {

namespace {

static_assert(static_cast<int>(DeviceParam::kLinearComputeInt8) - static_cast<int>(DeviceParam::kLinearComputeF32) + 1 ==
                  kLinearFormatCount,
              "one DeviceParam per LinearFormat, in its order");

std::optional<LinearFormat> LinearFormatOfParam(DeviceParam p) {
  const int i = static_cast<int>(p) - static_cast<int>(DeviceParam::kLinearComputeF32);
  if (i < 0 || i >= kLinearFormatCount) return std::nullopt;
  return static_cast<LinearFormat>(i);
}

}  // namespace

DeviceParam LinearComputeParam(LinearFormat f) {
  return static_cast<DeviceParam>(static_cast<int>(DeviceParam::kLinearComputeF32) + static_cast<int>(f));
}

const std::vector<DeviceParam>& AllDeviceParams() {
  static const std::vector<DeviceParam> all = [] {
    std::vector<DeviceParam> v;
    for (int i = 0; i <= static_cast<int>(DeviceParam::kLinearComputeInt8); ++i) v.push_back(static_cast<DeviceParam>(i));
    return v;
  }();
  return all;
}

std::string DeviceParamKey(DeviceParam p) {
  switch (p) {
    case DeviceParam::kMemoryEfficiency: return "efficiency.memory";
    case DeviceParam::kComputeEfficiency: return "efficiency.compute";
    case DeviceParam::kAttentionComputeEfficiency: return "efficiency.attention_compute";
    case DeviceParam::kMoeExpertComputeInt2Efficiency: return "efficiency.moe_expert_compute_int2";
    case DeviceParam::kMoeExpertComputeInt3Efficiency: return "efficiency.moe_expert_compute_int3";
    case DeviceParam::kMoeExpertComputeInt4Efficiency: return "efficiency.moe_expert_compute_int4";
    case DeviceParam::kMoeExpertComputeInt8Efficiency: return "efficiency.moe_expert_compute_int8";
    case DeviceParam::kDispatchOverhead: return "overhead.dispatch_s";
    case DeviceParam::kHeadDispatchOverhead: return "overhead.head_dispatch_s";
    default: break;
  }
  if (auto f = LinearFormatOfParam(p)) return std::string("efficiency.linear_compute_") + LinearFormatName(*f);
  return "?";
}

DeviceParam ParseDeviceParam(const std::string& key) {
  std::vector<std::string> keys;
  for (auto p : AllDeviceParams()) {
    if (DeviceParamKey(p) == key) return p;
    keys.push_back(DeviceParamKey(p));
  }
  std::string list;
  for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
  const std::string guess = DidYouMean(key, keys);
  throw MakeConfigError("--fit", key, "not a fittable device parameter", "one of " + list,
                        guess.empty() ? "" : "did you mean '" + guess + "'?");
}

double DeviceParamValue(const DeviceSpec& d, DeviceParam p) {
  if (auto f = LinearFormatOfParam(p)) return d.LinearComputeEfficiency(*f);
  DeviceSpec copy = d;
  return DeviceParamRef(copy, p);
}

double& DeviceParamRef(DeviceSpec& d, DeviceParam p) {
  if (auto f = LinearFormatOfParam(p)) {
    double& v = d.linear_compute_efficiency[static_cast<size_t>(*f)];
    if (!(v > 0)) v = d.compute_efficiency;
    return v;
  }
  switch (p) {
    case DeviceParam::kMemoryEfficiency: return d.memory_efficiency;
    case DeviceParam::kComputeEfficiency: return d.compute_efficiency;
    case DeviceParam::kAttentionComputeEfficiency: return d.attention_compute_efficiency;
    case DeviceParam::kMoeExpertComputeInt2Efficiency: return d.moe_expert_compute_int2_efficiency;
    case DeviceParam::kMoeExpertComputeInt3Efficiency: return d.moe_expert_compute_int3_efficiency;
    case DeviceParam::kMoeExpertComputeInt4Efficiency: return d.moe_expert_compute_int4_efficiency;
    case DeviceParam::kMoeExpertComputeInt8Efficiency: return d.moe_expert_compute_int8_efficiency;
    case DeviceParam::kDispatchOverhead: return d.dispatch_overhead_s;
    case DeviceParam::kHeadDispatchOverhead: return d.head_dispatch_overhead_s;
    default: break;
  }
  throw InternalError("bad DeviceParam");
}

namespace {

bool IsEfficiency(DeviceParam p) {
  return p != DeviceParam::kDispatchOverhead && p != DeviceParam::kHeadDispatchOverhead;
}

// Smooth unconstrained parametrisation: efficiencies = logistic(x) in (0, 1);
// overheads = 1e-6 s * x^2 >= 0 (reaches zero smoothly).
constexpr double kOverheadScale = 1e-6;
constexpr double kMaxEfficiencyStart = 0.9;
double ToValue(DeviceParam p, double x) {
  return IsEfficiency(p) ? 1.0 / (1.0 + std::exp(-x)) : kOverheadScale * x * x;
}
double FromValue(DeviceParam p, double v) {
  if (IsEfficiency(p)) {
    v = std::clamp(v, 1e-6, 1.0 - 1e-6);
    return std::log(v / (1.0 - v));
  }
  return std::sqrt(std::max(v, 0.0) / kOverheadScale);
}

DeviceSpec Apply(const DeviceSpec& base, const std::vector<DeviceParam>& params, const Eigen::VectorXd& x) {
  DeviceSpec d = base;
  for (size_t i = 0; i < params.size(); ++i) {
    DeviceParamRef(d, params[i]) = ToValue(params[i], x[static_cast<Eigen::Index>(i)]);
  }
  return d;
}

}  // namespace

CalibrationResult CalibrateDevice(const DeviceSpec& initial, const std::vector<DeviceParam>& params,
                                  const std::function<std::vector<double>(const DeviceSpec&)>& predict,
                                  const std::vector<double>& targets, int max_iterations) {
  const auto n = static_cast<Eigen::Index>(params.size());
  const auto m = static_cast<Eigen::Index>(targets.size());
  if (m < n) {
    throw MakeConfigError("calibration", "observations",
                          std::to_string(m) + " observations for " + std::to_string(n) + " parameters",
                          "at least as many observations as fitted parameters", "fit fewer parameters");
  }
  Eigen::VectorXd x0(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const DeviceParam p = params[static_cast<size_t>(i)];
    double v = DeviceParamValue(initial, p);
    if (!IsEfficiency(p) && !(v > 0)) v = 1e-7;  // start overheads off zero
    // An efficiency of 1 (what `lifeline probe` writes: the measured rate is
    // the achieved one) sits where the logistic is flat; from there every
    // multi-start stays saturated and the fit can run off to efficiencies -> 0.
    // Start such efficiencies at 0.9 instead (the fit may still return to ~1).
    if (IsEfficiency(p)) v = std::min(v, kMaxEfficiencyStart);
    x0[i] = FromValue(p, v);
  }
  auto residual = [&](const Eigen::VectorXd& p) {
    const std::vector<double> y = predict(Apply(initial, params, p));
    Eigen::VectorXd r(m);
    for (Eigen::Index i = 0; i < m; ++i) r[i] = y[static_cast<size_t>(i)] - targets[static_cast<size_t>(i)];
    return r;
  };
  // Levenberg-Marquardt from one start; returns the final point and cost.
  auto solve = [&](Eigen::VectorXd x, int* iterations, bool* converged) {
    Eigen::VectorXd r = residual(x);
    double cost = r.squaredNorm();
    double lambda = 1e-3;
    *converged = false;
    for (int it = 0; it < max_iterations; ++it) {
      *iterations = it + 1;
      Eigen::MatrixXd J(m, n);
      for (Eigen::Index j = 0; j < n; ++j) {
        Eigen::VectorXd xp = x;
        const double h = 1e-6;
        xp[j] += h;
        J.col(j) = (residual(xp) - r) / h;
      }
      const Eigen::MatrixXd A = J.transpose() * J;
      const Eigen::VectorXd g = J.transpose() * r;
      bool improved = false;
      for (int tries = 0; tries < 20 && !improved; ++tries) {
        Eigen::MatrixXd Ad = A;
        Ad.diagonal() += lambda * (A.diagonal().array() + 1e-12).matrix();
        const Eigen::VectorXd xn = x + Ad.ldlt().solve(-g);
        const Eigen::VectorXd rn = residual(xn);
        const double cn = rn.squaredNorm();
        if (std::isfinite(cn) && cn < cost) {
          const double rel = (cost - cn) / std::max(cost, 1e-300);
          x = xn;
          r = rn;
          cost = cn;
          lambda = std::max(lambda / 3, 1e-12);
          improved = true;
          if (rel < 1e-12) *converged = true;
        } else {
          lambda *= 4;
        }
      }
      if (!improved || *converged) {
        *converged = true;
        break;
      }
    }
    return std::make_pair(x, cost);
  };
  // Multi-start: the given values, then each parameter moved down or up
  // (all 2^n combinations), keeping the lowest cost. The roofline's max()
  // makes the cost surface non-convex, so one start can stall.
  CalibrationResult res;
  Eigen::VectorXd x = x0;
  double best = std::numeric_limits<double>::infinity();
  const int combos = 1 << std::min<Eigen::Index>(n, 8);
  for (int c = -1; c < combos; ++c) {
    Eigen::VectorXd start = x0;
    if (c >= 0) {
      for (Eigen::Index j = 0; j < n && j < 8; ++j) {
        const bool up = ((c >> j) & 1) != 0;
        if (IsEfficiency(params[static_cast<size_t>(j)])) start[j] += up ? 1.5 : -1.5;
        else start[j] *= up ? 2.0 : 0.5;
      }
    }
    int iters = 0;
    bool conv = false;
    auto [xs, cost] = solve(start, &iters, &conv);
    res.iterations += iters;
    if (cost < best) {
      best = cost;
      x = xs;
      res.converged = conv;
    }
  }
  res.device = Apply(initial, params, x);
  res.predicted = predict(res.device);
  res.residuals.resize(targets.size());
  double ss = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    res.residuals[i] = res.predicted[i] - targets[i];
    ss += res.residuals[i] * res.residuals[i];
    res.max_abs = std::max(res.max_abs, std::fabs(res.residuals[i]));
  }
  res.rms = std::sqrt(ss / static_cast<double>(targets.size()));
  // A fit whose predictions collapsed (efficiencies driven to 0 make every
  // throughput ~0) or that misses the observations widely is no fit.
  double ss_targets = 0;
  size_t collapsed = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    ss_targets += targets[i] * targets[i];
    if (!std::isfinite(res.predicted[i]) || (targets[i] > 0 && res.predicted[i] < 0.01 * targets[i])) ++collapsed;
  }
  const double relative_rms = ss_targets > 0 ? std::sqrt(ss / ss_targets) : 0.0;
  if (collapsed > 0) {
    res.problem = fmt::format("{} of {} predictions are below 1% of their observation or not finite: the "
                              "model cannot follow these observations (rms residual {:.4g})",
                              collapsed, targets.size(), res.rms);
  } else if (!(relative_rms <= kMaxRelativeRmsResidual)) {
    res.problem = fmt::format("the rms residual {:.4g} is {:.0f}% of the observations' rms, above the {:.0f}% a fit "
                              "may have",
                              res.rms, 100.0 * relative_rms, 100.0 * kMaxRelativeRmsResidual);
  }
  if (!res.problem.empty()) res.converged = false;
  return res;
}

std::vector<Observation> LoadObservationsCsv(const std::filesystem::path& csv, const std::string& device_name) {
  const CsvFile file = ReadCsv(csv, "the observations CSV");
  const std::vector<std::string> known = {"model", "plan", "context_tokens", "tps", "ttft_s", "prompt_tokens",
                                          "device", "fidelity", "fusion", "batch"};
  const std::vector<std::string>& header = file.header.fields;
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < header.size(); ++i) {
    if (std::find(known.begin(), known.end(), header[i]) == known.end()) {
      const std::string guess = DidYouMean(header[i], known);
      throw MakeConfigError(file.Where(file.header.line), header[i], "unknown column",
                            "model, plan, context_tokens, tps, ttft_s, prompt_tokens, device, fidelity, fusion, batch",
                            guess.empty() ? "" : "did you mean '" + guess + "'?");
    }
    col[header[i]] = i;
  }
  for (const char* req : {"model", "plan", "context_tokens"}) {
    if (!col.count(req)) {
      throw MakeConfigError(file.Where(file.header.line), req, "missing column",
                            "a header with model, plan, context_tokens and tps", "");
    }
  }
  if (!col.count("tps") && !col.count("ttft_s")) {
    throw MakeConfigError(file.Where(file.header.line), "tps", "no measurement column", "tps and/or ttft_s", "");
  }
  std::map<std::string, ModelArch> models;
  std::map<std::pair<std::string, std::string>, QuantPlan> plans;  // (model, plan) -> resolved plan
  std::vector<Observation> out;
  for (const CsvRecord& row : file.rows) {
    const std::string where = file.Where(row.line);
    const std::vector<std::string>& f = row.fields;
    auto get = [&](const char* k) -> std::string { return col.count(k) ? f[col[k]] : ""; };
    auto number = [&](const char* k) -> std::optional<double> {
      const std::string v = get(k);
      if (v.empty()) return std::nullopt;
      size_t used = 0;
      double d = 0;
      try {
        d = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || !std::isfinite(d) || d <= 0) {
        throw MakeConfigError(where, k, "'" + v + "' is not a positive number", "a plain number > 0",
                              "numbers carry no units: the unit is in the column name");
      }
      return d;
    };
    if (!get("device").empty() && get("device") != device_name) continue;
    Observation o;
    o.where = where;
    const std::string mname = get("model");
    if (!models.count(mname)) models.emplace(mname, ResolveModelArch(mname));
    o.arch = models.at(mname);
    auto plan = plans.find({mname, get("plan")});
    if (plan == plans.end()) {
      plan = plans.emplace(std::make_pair(mname, get("plan")), ResolveQuantPlan(get("plan"), o.arch)).first;
    }
    o.plan = plan->second;
    o.build.fidelity = get("fidelity").empty() ? Fidelity::kExact : ParseFidelity(get("fidelity"));
    if (!get("fusion").empty()) o.build.fusion = ParseFusionMode(get("fusion"));
    // Counts: whole numbers within the run limits (roofline/README.md).
    auto count = [&](const char* k, int64_t limit, const char* unit) -> std::optional<int64_t> {
      const auto v = number(k);
      if (!v) return std::nullopt;
      if (*v != std::floor(*v) || *v > static_cast<double>(limit)) {
        throw MakeConfigError(where, k,
                              "'" + get(k) + "' is " +
                                  (*v != std::floor(*v) ? std::string("not a whole number")
                                                        : "beyond the limit of " + std::to_string(limit) + " " + unit),
                              "a whole number in 1.." + std::to_string(limit) + " " + unit,
                              "the limits (roofline/README.md, \"Size limits\") are far above any deployed model");
      }
      return static_cast<int64_t>(*v);
    };
    if (auto b = count("batch", kMaxBatch, "sequences")) o.build.batch = *b;
    o.context_tokens = count("context_tokens", kMaxContextTokens, "tokens").value_or(0);
    if (o.context_tokens <= 0) throw MakeConfigError(where, "context_tokens", "missing", "tokens >= 1", "");
    o.tps = number("tps");
    o.ttft_s = number("ttft_s");
    if (o.ttft_s) {
      const auto p = count("prompt_tokens", kMaxPromptTokens, "tokens");
      if (!p) throw MakeConfigError(where, "prompt_tokens", "missing for a ttft_s row", "tokens >= 1", "");
      o.prompt_tokens = static_cast<int64_t>(*p);
    }
    if (!o.tps && !o.ttft_s) throw MakeConfigError(where, "tps", "no measurement in this row", "tps or ttft_s", "");
    out.push_back(std::move(o));
  }
  if (out.empty()) {
    throw MakeConfigError(csv.string(), "device", "no observation rows for device '" + device_name + "'",
                          "rows without a device column or with device = " + device_name, "");
  }
  return out;
}

ObservationFit CalibrateFromObservations(const DeviceSpec& initial, const std::vector<DeviceParam>& params,
                                         const std::vector<Observation>& obs) {
  ObservationFit of;
  std::map<std::string, std::unique_ptr<CompiledGraph>> graphs;
  auto graph = [&](const Observation& o, Phase phase) -> const CompiledGraph* {
    BuildOptions b = o.build;
    b.phase = phase;
    b.prompt_tokens = phase == Phase::kPrefill ? o.prompt_tokens : 0;
    std::string key = o.arch.name + "|" + o.plan.name + "|" + o.plan.source + "|" + FidelityName(b.fidelity) + "|" +
                      FusionModeName(b.fusion) + "|" + std::to_string(b.batch) + "|" +
                      std::to_string(static_cast<int>(phase)) + "|" + std::to_string(b.prompt_tokens);
    auto it = graphs.find(key);
    if (it == graphs.end())
      it = graphs.emplace(key, std::make_unique<CompiledGraph>(BuildModelGraph(o.arch, o.plan, b))).first;
    return it->second.get();
  };
  // Rows share (graph, context) points: each point's step time is computed
  // once per prediction, however many rows observe it.
  std::map<std::pair<const CompiledGraph*, int64_t>, size_t> point_of;
  std::vector<std::pair<const CompiledGraph*, int64_t>> points;
  struct Term {
    size_t point;
    bool ttft;
  };
  std::vector<Term> terms;
  auto term = [&](const CompiledGraph* g, int64_t ctx, bool ttft) {
    auto [it, added] = point_of.emplace(std::make_pair(g, ctx), points.size());
    if (added) points.emplace_back(g, ctx);
    return Term{it->second, ttft};
  };
  std::vector<double> tps_targets;
  for (size_t i = 0; i < obs.size(); ++i) {
    if (obs[i].tps) {
      terms.push_back(term(graph(obs[i], Phase::kDecode), obs[i].context_tokens, false));
      of.rows.push_back(i);
      of.kinds.push_back("tps");
      of.measured.push_back(*obs[i].tps);
      tps_targets.push_back(*obs[i].tps);
    }
    if (obs[i].ttft_s) {
      terms.push_back(term(graph(obs[i], Phase::kPrefill), obs[i].context_tokens, true));
      of.rows.push_back(i);
      of.kinds.push_back("ttft_s");
      of.measured.push_back(*obs[i].ttft_s);
    }
  }
  double scale = 1.0;  // median measured TPS: the weight of a relative TTFT miss
  if (!tps_targets.empty()) {
    std::sort(tps_targets.begin(), tps_targets.end());
    scale = tps_targets[tps_targets.size() / 2];
  }
  std::vector<double> targets(terms.size());
  for (size_t i = 0; i < terms.size(); ++i) targets[i] = terms[i].ttft ? scale : of.measured[i];
  auto predict_raw = [&](const DeviceSpec& d) {
    std::vector<double> seconds(points.size());
    for (size_t p = 0; p < points.size(); ++p) seconds[p] = points[p].first->StepSeconds(d, points[p].second);
    std::vector<double> y(terms.size());
    for (size_t i = 0; i < terms.size(); ++i) {
      const double s = seconds[terms[i].point];
      y[i] = terms[i].ttft ? s : 1.0 / s;
    }
    return y;
  };
  auto predict = [&](const DeviceSpec& d) {
    std::vector<double> y = predict_raw(d);
    for (size_t i = 0; i < terms.size(); ++i)
      if (terms[i].ttft) y[i] = y[i] / of.measured[i] * scale;
    return y;
  };
  of.fit = CalibrateDevice(initial, params, predict, targets);
  of.predicted = predict_raw(of.fit.device);
  of.residuals.resize(terms.size());
  double ss_tps = 0, ss_ttft = 0, mean_tps = 0, mean_ttft = 0;
  for (size_t i = 0; i < terms.size(); ++i) {
    of.residuals[i] = of.predicted[i] - of.measured[i];
    if (terms[i].ttft) {
      ++of.ttft_count;
      ss_ttft += of.residuals[i] * of.residuals[i];
      of.max_abs_ttft_s = std::max(of.max_abs_ttft_s, std::fabs(of.residuals[i]));
      mean_ttft += of.measured[i];
    } else {
      ++of.tps_count;
      ss_tps += of.residuals[i] * of.residuals[i];
      of.max_abs_tps = std::max(of.max_abs_tps, std::fabs(of.residuals[i]));
      mean_tps += of.measured[i];
    }
  }
  double tot_tps = 0, tot_ttft = 0;
  if (of.tps_count) mean_tps /= of.tps_count;
  if (of.ttft_count) mean_ttft /= of.ttft_count;
  for (size_t i = 0; i < terms.size(); ++i) {
    const double dv = of.measured[i] - (terms[i].ttft ? mean_ttft : mean_tps);
    (terms[i].ttft ? tot_ttft : tot_tps) += dv * dv;
  }
  if (of.tps_count) {
    of.rms_tps = std::sqrt(ss_tps / of.tps_count);
    of.r2_tps = tot_tps > 0 ? 1.0 - ss_tps / tot_tps : 1.0;
  }
  if (of.ttft_count) {
    of.rms_ttft_s = std::sqrt(ss_ttft / of.ttft_count);
    of.r2_ttft = tot_ttft > 0 ? 1.0 - ss_ttft / tot_ttft : 1.0;
  }
  return of;
}

}  // namespace lifeline
