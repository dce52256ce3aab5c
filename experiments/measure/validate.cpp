#include "experiments/measure/validate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include <fmt/format.h>

#include "experiments/sweep/sha256.hpp"
#include "experiments/sweep/store.hpp"
#include "reports/plot.hpp"
#include "reports/table.hpp"
#include "common/error.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::measure {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<DeviceParam> DefaultValidateFit() {
  // What the probe measures least directly: attention inside a real decode
  // graph and the per-operator cost. The per-format matrix-vector rates are
  // measured kernel by kernel and kept: fitted on one model shape they also
  // absorb its per-token costs and then mispredict other shapes (measured
  // here: held-out median |error| 24% with them fitted, 14% without).
  return {ParseDeviceParam("efficiency.attention_compute"), ParseDeviceParam("overhead.dispatch_s")};
}

namespace {

struct Resolved {
  std::map<std::string, ModelArch> arch;
  std::map<std::string, QuantPlan> plan;  // by "model|plan": presets depend on the model
};

Resolved Resolve(const ValidateOptions& o) {
  Resolved r;
  for (const auto& m : o.models) {
    ModelArch a = ResolveModelArch(m);
    for (const auto& p : o.plans) r.plan[m + "|" + p] = ResolveQuantPlan(p, a);
    r.arch[m] = std::move(a);
  }
  return r;
}

double MaxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

json Round(double v, int digits) {
  if (!std::isfinite(v)) return nullptr;
  const double s = std::pow(10.0, digits);
  return std::round(v * s) / s;
}

std::string ModeLabel(const std::string& mode) {
  return mode == "zero_fit" ? "zero-fit (probed device)" : "calibrated (fit on the training subset)";
}

}  // namespace

ValidationReport ScoreValidation(const std::vector<MeasuredPoint>& points, const DeviceSpec& probed,
                                 const ValidateOptions& o) {
  if (points.empty()) throw Error("validate: no measured points to score");
  const Resolved res = Resolve(o);
  const std::string train_model = o.train_model.empty() ? o.models.front() : o.train_model;
  const auto is_train = [&](const MeasuredPoint& p) {
    return p.model == train_model &&
           std::find(o.train_contexts.begin(), o.train_contexts.end(), p.context_tokens) != o.train_contexts.end();
  };
  std::map<std::string, CompiledGraph> graphs;  // "model|plan"
  for (const auto& p : points) {
    const std::string key = p.model + "|" + p.plan;
    if (!res.plan.count(key)) {
      throw Error("validate: measured point " + key + " is not among --model/--plan");
    }
    if (!graphs.count(key)) graphs.emplace(key, ForecastGraph(res.arch.at(p.model), res.plan.at(key), o.measure.flash_attn));
  }
  const auto forecast = [&](const DeviceSpec& d, const MeasuredPoint& p) {
    return ForecastTps(graphs.at(p.model + "|" + p.plan), d, p.context_tokens, o.measure.gen);
  };

  // The measured figure of a point: the median of its repetitions, or the
  // best one (on a machine whose neighbours only ever slow it down).
  const bool best = o.statistic == "best";
  if (!best && o.statistic != "median") {
    throw MakeConfigError("--statistic", o.statistic, "unknown statistic", "median or best", "");
  }
  const auto measured = [best](const MeasuredPoint& p) { return best ? p.tps_max : p.tps_median; };

  ValidationReport rep;
  rep.zero_fit_device = probed;

  // Calibrated mode: relative least squares on the training rows only.
  std::vector<const MeasuredPoint*> train;
  for (const auto& p : points) {
    if (is_train(p)) train.push_back(&p);
  }
  if (train.empty()) {
    throw Error("validate: no measured point is in the training subset (model " + train_model +
                " at the training contexts): add them to --models/--contexts");
  }
  const std::vector<DeviceParam> fit = o.fit.empty() ? DefaultValidateFit() : o.fit;
  if (train.size() < fit.size()) {
    throw Error(fmt::format("validate: {} training points cannot determine {} fitted parameters", train.size(),
                            fit.size()));
  }
  const auto predict = [&](const DeviceSpec& d) {
    std::vector<double> ratio;
    for (const MeasuredPoint* p : train) ratio.push_back(forecast(d, *p) / measured(*p));
    return ratio;
  };
  rep.fit = CalibrateDevice(probed, fit, predict, std::vector<double>(train.size(), 1.0));
  rep.calibrated_device = rep.fit.device;
  rep.calibrated_device.name = probed.name + "_validated";
  rep.calibrated_device.description =
      probed.description + "; calibrated by lifeline validate on " + train_model + " at the training contexts";
  for (DeviceParam prm : fit) {
    const std::string key = DeviceParamKey(prm);
    rep.calibrated_device.sources[key] =
        fmt::format("fitted by `lifeline validate` (relative least squares) to {} llama.cpp decodes of {} on "
                    "this machine; rms relative residual {:.4f}",
                    train.size(), train_model, rep.fit.rms);
  }

  // Rows.
  std::map<std::string, std::vector<double>> err;  // mode[/heldout] -> |error %|
  for (const std::string mode : {"zero_fit", "calibrated"}) {
    const DeviceSpec& d = mode == std::string("zero_fit") ? rep.zero_fit_device : rep.calibrated_device;
    for (const auto& p : points) {
      ValidationRow r;
      r.model = p.model;
      r.plan = p.plan;
      r.mode = mode;
      r.context_tokens = p.context_tokens;
      r.measured_tps = measured(p);
      r.forecast_tps = forecast(d, p);
      r.error_pct = 100.0 * (r.forecast_tps / r.measured_tps - 1.0);
      r.heldout = mode == std::string("calibrated") ? !is_train(p) : true;
      r.noisy = p.noisy;
      err[mode].push_back(r.error_pct);
      if (r.heldout) err[mode + "/heldout"].push_back(std::abs(r.error_pct));
      rep.rows.push_back(r);
    }
  }

  // Gain% and Capture% of the mixed plan over the baseline (and ceiling).
  std::map<std::tuple<std::string, int64_t, std::string>, const MeasuredPoint*> by;
  for (const auto& p : points) by[{p.model, p.context_tokens, p.plan}] = &p;
  std::vector<double> gain_diff_cal, gain_diff_zero;
  for (const auto& m : o.models) {
    for (int64_t c : o.contexts) {
      const auto b = by.find({m, c, o.baseline_plan}), x = by.find({m, c, o.mixed_plan}),
                 w = by.find({m, c, o.ceiling_plan});
      if (b == by.end() || x == by.end()) continue;
      for (const std::string mode : {"zero_fit", "calibrated"}) {
        const DeviceSpec& d = mode == std::string("zero_fit") ? rep.zero_fit_device : rep.calibrated_device;
        GainRow g;
        g.model = m;
        g.mode = mode;
        g.context_tokens = c;
        const double mb = measured(*b->second), mx = measured(*x->second);
        const double fb = forecast(d, *b->second), fx = forecast(d, *x->second);
        g.measured_gain_pct = 100.0 * (mx / mb - 1.0);
        g.forecast_gain_pct = 100.0 * (fx / fb - 1.0);
        if (w != by.end()) {
          const double mw = measured(*w->second), fw = forecast(d, *w->second);
          g.measured_capture_pct = 100.0 * (mx - mb) / (mw - mb);
          g.forecast_capture_pct = 100.0 * (fx - fb) / (fw - fb);
        } else {
          g.measured_capture_pct = g.forecast_capture_pct = NAN;
        }
        (mode == std::string("zero_fit") ? gain_diff_zero : gain_diff_cal)
            .push_back(g.forecast_gain_pct - g.measured_gain_pct);
        rep.gains.push_back(g);
      }
    }
  }

  std::set<std::string> models;
  for (const auto& p : points) models.insert(p.model);
  int noisy = 0;
  for (const auto& p : points) noisy += p.noisy ? 1 : 0;
  std::vector<double> zero_abs;
  for (double e : err["zero_fit"]) zero_abs.push_back(std::abs(e));
  std::vector<std::string> fit_keys;
  for (DeviceParam prm : fit) fit_keys.push_back(DeviceParamKey(prm));
  json fitted = json::object();
  for (DeviceParam prm : fit) {
    DeviceSpec copy = rep.calibrated_device;
    fitted[DeviceParamKey(prm)] = DeviceParamRef(copy, prm);
  }
  rep.summary = {
      {"points", points.size()},
      {"models", std::vector<std::string>(models.begin(), models.end())},
      {"plans", o.plans},
      {"contexts", o.contexts},
      {"noisy_points", noisy},
      {"train_model", train_model},
      {"train_contexts", o.train_contexts},
      {"train_points", train.size()},
      {"fitted_parameters", fit_keys},
      {"fitted_values", fitted},
      {"fit_rms_relative", Round(rep.fit.rms, 5)},
      {"calibrated_heldout_points", err["calibrated/heldout"].size()},
      {"calibrated_heldout_median_abs_error_pct", Round(Median(err["calibrated/heldout"]), 3)},
      {"calibrated_heldout_max_abs_error_pct", Round(MaxAbs(err["calibrated/heldout"]), 3)},
      {"zero_fit_median_abs_error_pct", Round(Median(zero_abs), 3)},
      {"zero_fit_max_abs_error_pct", Round(MaxAbs(zero_abs), 3)},
      {"gain_pct_max_abs_diff_pp", Round(MaxAbs(gain_diff_cal), 3)},
      {"zero_fit_gain_pct_max_abs_diff_pp", Round(MaxAbs(gain_diff_zero), 3)},
      {"threads", o.measure.threads},
      {"gen_tokens", o.measure.gen},
      {"statistic", o.statistic},
      {"reps_per_round", o.measure.reps},
      {"rounds", o.measure.rounds},
      {"flash_attn", o.measure.flash_attn},
      {"seed", o.measure.seed},
      {"machine", MachineDescription()},
  };
  return rep;
}

namespace {

void WriteOutputs(const ValidationReport& rep, const ValidateOptions& o) {
  using reports::Cell;
  reports::Table t;
  t.title = "Decode tokens/s on this machine: llama.cpp measured vs lifeline forecast";
  t.columns = {"model", "plan", "context_tokens", "mode", "measured_tps", "forecast_tps", "error_pct", "heldout"};
  for (const auto& r : rep.rows) {
    t.rows.push_back({r.model, r.plan, Cell::Int(r.context_tokens), r.mode, Cell(r.measured_tps, 3),
                      Cell(r.forecast_tps, 3), Cell(r.error_pct, 2), r.heldout ? "true" : "false"});
  }
  reports::WriteFileAtomic(o.out / "validation.csv", reports::ToCsv(t));

  reports::Table g;
  g.title = "Gain% and Capture% of " + o.mixed_plan + " over " + o.baseline_plan + " (ceiling " + o.ceiling_plan + ")";
  g.columns = {"model", "context_tokens", "mode", "measured_gain_pct", "forecast_gain_pct", "diff_pp",
               "measured_capture_pct", "forecast_capture_pct"};
  for (const auto& r : rep.gains) {
    g.rows.push_back({r.model, Cell::Int(r.context_tokens), r.mode, Cell(r.measured_gain_pct, 2),
                      Cell(r.forecast_gain_pct, 2), Cell(r.forecast_gain_pct - r.measured_gain_pct, 2),
                      std::isfinite(r.measured_capture_pct) ? Cell(r.measured_capture_pct, 1) : Cell(),
                      std::isfinite(r.forecast_capture_pct) ? Cell(r.forecast_capture_pct, 1) : Cell()});
  }
  reports::WriteFileAtomic(o.out / "gain.csv", reports::ToCsv(g));
  reports::WriteFileAtomic(o.out / "summary.json", rep.summary.dump(2) + "\n");
  reports::WriteFileAtomic(o.out / "device_calibrated.yaml", DeviceSpecToYaml(rep.calibrated_device));

  // Markdown: one wide table (measured, zero-fit, calibrated per point).
  reports::Table w;
  w.title = "Measured vs forecast decode TPS";
  w.columns = {"model", "plan", "context_tokens", "measured_tps", "zero_fit_tps", "zero_fit_error_pct",
               "calibrated_tps", "calibrated_error_pct", "split"};
  w.headers = {"model", "plan", "context", "measured", "zero-fit", "err %", "calibrated", "err %", "split"};
  std::map<std::tuple<std::string, std::string, int64_t>, const ValidationRow*> zero;
  for (const auto& r : rep.rows) {
    if (r.mode == "zero_fit") zero[{r.model, r.plan, r.context_tokens}] = &r;
  }
  for (const auto& r : rep.rows) {
    if (r.mode != "calibrated") continue;
    const ValidationRow* z = zero.at({r.model, r.plan, r.context_tokens});
    w.rows.push_back({r.model, r.plan, Cell::Int(r.context_tokens),
                      Cell(r.measured_tps, 2), Cell(z->forecast_tps, 2), Cell(z->error_pct, 1),
                      Cell(r.forecast_tps, 2), Cell(r.error_pct, 1),
                      std::string(r.heldout ? "held out" : "train") + (r.noisy ? " (noisy)" : "")});
  }
  const json& s = rep.summary;
  w.notes.push_back(fmt::format(
      "Calibrated, held-out points: median |error| {}%, max {}% ({} points). Zero-fit: median |error| {}%, max {}%.",
      s["calibrated_heldout_median_abs_error_pct"].dump(), s["calibrated_heldout_max_abs_error_pct"].dump(),
      s["calibrated_heldout_points"].dump(), s["zero_fit_median_abs_error_pct"].dump(),
      s["zero_fit_max_abs_error_pct"].dump()));
  std::string md = "# lifeline validate\n\nMachine: " + s["machine"].get<std::string>() + "; llama.cpp threads " +
                   s["threads"].dump() + ", " + s["gen_tokens"].dump() + " decoded tokens x " + s["reps_per_round"].dump() +
                   " repetition(s) x " + s["rounds"].dump() + " rounds per point (median; formats interleaved), flash attention " +
                   (s["flash_attn"].get<bool>() ? "on" : "off") + ". Fitted on " + s["train_model"].get<std::string>() +
                   " at contexts " + s["train_contexts"].dump() + ": " + s["fitted_values"].dump() + ".\n\n" +
                   reports::ToMarkdown(w) + "\n" + reports::ToMarkdown(g);
  reports::WriteFileAtomic(o.out / "validation.md", md);

  if (!reports::GnuplotAvailable()) return;
  const fs::path fig = o.out / "figures";
  fs::create_directories(fig);
  // Measured vs forecast scatter, both modes, with y = x and +-10 %.
  {
    reports::LineChart c;
    c.title = "Decode tokens/s: forecast vs llama.cpp measurement";
    c.xlabel = "measured (tokens/s)";
    c.ylabel = "forecast (tokens/s)";
    c.logxy_decimal = true;
    double lo = 1e30, hi = 0;
    for (const std::string mode : {"zero_fit", "calibrated"}) {
      reports::Series se;
      se.label = ModeLabel(mode);
      se.points_only = true;
      for (const auto& r : rep.rows) {
        if (r.mode != mode) continue;
        se.x.push_back(r.measured_tps);
        se.y.push_back(r.forecast_tps);
        lo = std::min({lo, r.measured_tps, r.forecast_tps});
        hi = std::max({hi, r.measured_tps, r.forecast_tps});
      }
      c.series.push_back(se);
    }
    for (const auto& [label, f, style] : std::vector<std::tuple<std::string, double, std::string>>{
             {"forecast = measured", 1.0, "lc rgb \"#444444\" dt 1"},
             {"+10 %", 1.1, "lc rgb \"#999999\" dt 2"},
             {"-10 %", 0.9, "lc rgb \"#999999\" dt 2"}}) {
      reports::Series se;
      se.label = label;
      se.style = style;
      se.x = {lo * 0.8, hi * 1.25};
      se.y = {lo * 0.8 * f, hi * 1.25 * f};
      c.series.push_back(se);
    }
    reports::WriteLineChart(c, fig, "measured_vs_forecast");
  }
  // TPS vs context per model: measured (points) and calibrated forecast (lines) per plan.
  for (const auto& m : o.models) {
    reports::LineChart c;
    c.title = m + ": decode tokens/s vs context (points measured, lines forecast, calibrated)";
    c.xlabel = "context (tokens)";
    c.ylabel = "tokens/s";
    c.logx = true;
    for (const auto& p : o.plans) {
      reports::Series meas, fc;
      meas.label = p + " measured";
      meas.points_only = true;
      fc.label = p + " forecast";
      for (const auto& r : rep.rows) {
        if (r.mode != "calibrated" || r.model != m || r.plan != p) continue;
        meas.x.push_back(static_cast<double>(r.context_tokens));
        meas.y.push_back(r.measured_tps);
        fc.x.push_back(static_cast<double>(r.context_tokens));
        fc.y.push_back(r.forecast_tps);
      }
      if (meas.x.empty()) continue;
      c.series.push_back(meas);
      c.series.push_back(fc);
    }
    if (!c.series.empty()) reports::WriteLineChart(c, fig, "tps_vs_context_" + m);
  }
  // Gain% measured vs forecast per model.
  {
    reports::LineChart c;
    c.title = "Gain% of " + o.mixed_plan + " over " + o.baseline_plan + ": measured (points) vs forecast (lines)";
    c.xlabel = "context (tokens)";
    c.ylabel = "Gain (%)";
    c.logx = true;
    c.yzero_line = true;
    for (const auto& m : o.models) {
      reports::Series meas, fc;
      meas.label = m + " measured";
      meas.points_only = true;
      fc.label = m + " forecast (calibrated)";
      for (const auto& g2 : rep.gains) {
        if (g2.model != m || g2.mode != "calibrated") continue;
        meas.x.push_back(static_cast<double>(g2.context_tokens));
        meas.y.push_back(g2.measured_gain_pct);
        fc.x.push_back(static_cast<double>(g2.context_tokens));
        fc.y.push_back(g2.forecast_gain_pct);
      }
      if (meas.x.empty()) continue;
      c.series.push_back(meas);
      c.series.push_back(fc);
    }
    if (!c.series.empty()) reports::WriteLineChart(c, fig, "gain_measured_vs_forecast");
  }
}

}  // namespace

ValidationReport RunValidation(const ValidateOptions& o) {
  const DeviceSpec probed = LoadDeviceSpec(o.device);
  const GridResult grid = MeasureGrid(o.models, o.plans, o.contexts, o.measure, o.store);
  const std::vector<MeasuredPoint>& points = grid.points;
  const int measured_now = grid.measured_now, reused = grid.reused;
  ValidationReport rep = ScoreValidation(points, probed, o);
  rep.summary["measured_now"] = measured_now;
  rep.summary["reused_from_store"] = reused;
  rep.summary["store"] = o.store.string();
  WriteOutputs(rep, o);
  return rep;
}

}  // namespace lifeline::measure
