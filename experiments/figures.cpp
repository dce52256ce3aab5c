#include "experiments/figures.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "experiments/paper/paper_report.hpp"
#include "reports/plot.hpp"
#include "roofline/eval/evaluator.hpp"

namespace lifeline::cli {
namespace {

const char* const kModelColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"};

std::string PlanLabel(const std::string& p) {
  if (p == "w4") return "W4";
  if (p == "w2") return "W2";
  if (p == "w4w2-gateup") return "W4/W2 gate-up";
  return p;
}

const std::vector<std::string>& ClassOrder() {
  static const std::vector<std::string> k = {"MLP gate+up", "MLP down", "attention q/k/v/o projections",
                                             "attention + KV cache", "LM head + embedding",
                                             "norms, RoPE, residual, other"};
  return k;
}

reports::HtmlImage Image(const reports::Figure& f, const std::filesystem::path& relative_to, const std::string& caption) {
  return {std::filesystem::relative(f.png, relative_to).string(), caption,
          std::filesystem::relative(f.script, relative_to).string()};
}

// Per-class decode time (ms) of one setting.
std::vector<double> BreakdownMs(const whatif::PointAnalysis& a) {
  std::vector<double> v(ClassOrder().size(), 0.0);
  for (const auto& g : a.ops) {
    const auto it = std::find(ClassOrder().begin(), ClassOrder().end(), OpClass(g.name, g.kind));
    v[static_cast<size_t>(it - ClassOrder().begin())] += g.time_s * 1e3;
  }
  return v;
}

whatif::Setting PaperSetting(const ModelArch& m, const DeviceSpec& d, const std::string& plan, int64_t ctx) {
  whatif::Setting s;
  s.arch = m;
  s.device = d;
  s.plan = PresetPlan(plan, m);
  s.decode.fidelity = Fidelity::kPaper;
  s.decode.fusion = FusionMode::kPaper;
  s.prefill = s.decode;
  s.prefill.phase = Phase::kPrefill;
  s.prefill.prompt_tokens = 1024;
  s.context = ctx;
  s.prompt = 1024;
  s.fusion = "paper";
  s.fidelity = "paper";
  return s;
}

// A sweep key as an axis label with its unit.
std::string AxisLabel(const std::string& key) {
  if (key == "int8_tops") return "int8_tops (peak INT8 TOPS)";
  if (key == "memory_bandwidth_gb_per_s") return "memory_bandwidth_gb_per_s (GB/s)";
  if (key == "memory_capacity_gb") return "memory_capacity_gb (GB)";
  if (key == "context" || key == "prompt") return key + " (tokens)";
  if (key == "batch") return "batch (sequences)";
  if (key.rfind("efficiency.", 0) == 0) return key + " (fraction of peak)";
  if (key.rfind("overhead.", 0) == 0) return key + " (s)";
  return key;
}

bool IsNumber(const std::string& s) {
  size_t used = 0;
  try {
    (void)std::stod(s, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == s.size();
}

}  // namespace

std::string OpClass(const std::string& name, const std::string& kind) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("gate_proj") || has("up_proj")) return "MLP gate+up";
  if (has("down_proj")) return "MLP down";
  if (has("q_proj") || has("k_proj") || has("v_proj") || has("o_proj")) return "attention q/k/v/o projections";
  if (has("attention") || has("qk_matmul") || has("softmax") || has("pv_matmul") || has("kv_append"))
    return "attention + KV cache";
  if (has("lm_head") || has("embed_tokens")) return "LM head + embedding";
  return "norms, RoPE, residual, other";
}

reports::RooflineChart RooflineOf(const whatif::PointAnalysis& a, const whatif::Setting& s) {
  reports::RooflineChart c;
  c.title = fmt::format("Roofline: {} {} on {}, decode at {} tokens of context", s.arch.name, PlanLabel(s.plan.name),
                        s.device.name, s.context);
  c.peak_ops_per_s = s.device.compute_ops_per_s;
  c.bandwidth_bytes_per_s = s.device.memory_bandwidth_bytes_per_s;
  c.effective_ops_per_s = s.device.compute_ops_per_s * s.device.compute_efficiency;
  c.effective_bandwidth_bytes_per_s = s.device.memory_bandwidth_bytes_per_s * s.device.memory_efficiency;
  for (const auto& g : a.ops) {
    if (g.time_s <= 0 || g.flops <= 0 || g.bytes <= 0) continue;
    std::string label = g.name;
    if (label.rfind("layers.*.", 0) == 0) label = label.substr(9);
    c.points.push_back({label, g.intensity_ops_per_byte, g.flops / g.time_s, g.bound == "compute"});
  }
  c.labelled = 7;
  return c;
}

std::vector<reports::HtmlImage> WritePaperFigures(const std::vector<PaperRow>& rows,
                                                  const std::vector<DeviceSpec>& devices,
                                                  const std::vector<ModelArch>& models,
                                                  const std::filesystem::path& dir,
                                                  const std::filesystem::path& relative_to) {
  std::vector<reports::HtmlImage> images;
  auto rows_of = [&](const std::string& dev, const std::string& model) {
    std::vector<const PaperRow*> r;
    for (const auto& x : rows)
      if (x.device == dev && x.model == model) r.push_back(&x);
    return r;
  };
  // 1. TPS vs context, one figure per device.
  for (const auto& d : devices) {
    reports::LineChart c;
    c.title = fmt::format("Decode throughput on {} ({:.0f} TOPS, {:.0f} GB/s), paper fidelity", d.name,
                          d.compute_ops_per_s / 1e12, d.memory_bandwidth_bytes_per_s / 1e9);
    c.xlabel = "context (tokens, log scale)";
    c.ylabel = "decode throughput (tokens/s, batch 1)";
    c.logx = true;
    for (size_t mi = 0; mi < models.size(); ++mi) {
      const auto r = rows_of(d.name, models[mi].name);
      const char* dts[] = {"dt 1", "dt 2", "dt 4"};
      for (size_t pi = 0; pi < kPaperPlans.size(); ++pi) {
        reports::Series s;
        s.label = models[mi].name + " " + PlanLabel(kPaperPlans[pi]);
        s.style = fmt::format("lc rgb \"{}\" {}", kModelColors[mi % 6], dts[pi]);
        for (const auto* x : r) {
          s.x.push_back(static_cast<double>(x->context_tokens));
          s.y.push_back(pi == 0 ? x->tps_w4 : pi == 1 ? x->tps_w2 : x->tps_w4w2_gateup);
        }
        c.series.push_back(s);
      }
    }
    images.push_back(Image(reports::WriteLineChart(c, dir, "tps_vs_context_" + d.name), relative_to,
                           "Decode TPS vs context on " + d.name + ": colour = model, line style = plan"));
  }
  // 2. Gain% and Capture% vs context.
  for (int which = 0; which < 2; ++which) {
    reports::LineChart c;
    c.title = which == 0 ? "Gain% of W4/W2 gate-up over W4" : "Capture%: share of the W2 speed-up W4/W2 gate-up keeps";
    c.xlabel = "context (tokens, log scale)";
    c.ylabel = which == 0 ? "Gain (%) = 100 x (TPS(W4/W2) / TPS(W4) - 1)"
                          : "Capture (%) = 100 x (TPS(W4/W2) - TPS(W4)) / (TPS(W2) - TPS(W4))";
    c.logx = true;
    for (size_t di = 0; di < devices.size(); ++di) {
      for (size_t mi = 0; mi < models.size(); ++mi) {
        reports::Series s;
        s.label = models[mi].name + " on " + devices[di].name;
        s.style = fmt::format("lc rgb \"{}\" {}", kModelColors[mi % 6], di == 0 ? "dt 1" : "dt 2");
        for (const auto* x : rows_of(devices[di].name, models[mi].name)) {
          s.x.push_back(static_cast<double>(x->context_tokens));
          s.y.push_back(which == 0 ? x->gain_pct : x->capture_pct);
        }
        c.series.push_back(s);
      }
    }
    const std::string stem = which == 0 ? "gain_vs_context" : "capture_vs_context";
    images.push_back(Image(reports::WriteLineChart(c, dir, stem), relative_to,
                           which == 0 ? "Gain% vs context: colour = model, solid = first device, dashed = second"
                                      : "Capture% vs context: colour = model, solid = first device, dashed = second"));
  }
  // 3./4. Roofline and breakdown per device.
  for (const auto& d : devices) {
    const ModelArch& m0 = models.front();
    const whatif::Setting s = PaperSetting(m0, d, "w4w2-gateup", 4096);
    const whatif::PointAnalysis a = whatif::Analyze(s, false);
    images.push_back(Image(reports::WriteRooflineChart(RooflineOf(a, s), dir, "roofline_" + d.name + "_" + m0.name),
                           relative_to,
                           "Each operator group of " + m0.name + " (W4/W2 gate-up, 4k context) at its arithmetic "
                           "intensity on " + d.name + "; labels name the largest by time"));
    reports::StackedBars b;
    b.title = fmt::format("Decode step time by operator class on {} (context 4096 tokens)", d.name);
    b.ylabel = "time per decode step (ms)";
    b.segments = ClassOrder();
    for (const auto& m : models) {
      for (const auto& p : kPaperPlans) {
        b.categories.push_back(m.name + " " + PlanLabel(p));
        b.values.push_back(BreakdownMs(whatif::Analyze(PaperSetting(m, d, p, 4096), false)));
      }
    }
    images.push_back(Image(reports::WriteStackedBars(b, dir, "breakdown_" + d.name), relative_to,
                           "Where the decode step's time goes, per model and plan, on " + d.name));
  }
  // 5. Gain% heatmap over bandwidth x TOPS (first model, first device's efficiencies).
  {
    const ModelArch& m0 = models.front();
    const DeviceSpec& d0 = devices.front();
    BuildOptions o;
    const CompiledGraph w4(BuildModelGraph(m0, PresetPlan("w4", m0), o));
    const CompiledGraph mix(BuildModelGraph(m0, PresetPlan("w4w2-gateup", m0), o));
    reports::Heatmap h;
    h.title = fmt::format("Gain% of W4/W2 gate-up over W4, {} at 4096 tokens, {} efficiencies", m0.name, d0.name);
    h.xlabel = "memory bandwidth (GB/s)";
    h.ylabel = "peak INT8 compute (TOPS)";
    h.zlabel = "Gain (%)";
    for (double bw = 25; bw <= 800 + 1e-9; bw += 25) h.x.push_back(bw);
    for (double t = 1; t <= 40 + 1e-9; t += 1) h.y.push_back(t);
    DeviceSpec d = d0;
    for (double t : h.y) {
      std::vector<double> row;
      d.compute_ops_per_s = t * 1e12;
      for (double bw : h.x) {
        d.memory_bandwidth_bytes_per_s = bw * 1e9;
        row.push_back(GainPct(1.0 / w4.StepSeconds(d, 4096), 1.0 / mix.StepSeconds(d, 4096)));
      }
      h.z.push_back(row);
    }
    images.push_back(Image(reports::WriteHeatmap(h, dir, "gain_heatmap_bandwidth_tops"), relative_to,
                           "Gain% over bandwidth x TOPS: where 2-bit gate/up projections pay off (white lines: "
                           "contours)"));
  }
  return images;
}

std::vector<std::filesystem::path> WritePaperHtml(const std::filesystem::path& out, const std::vector<PaperRow>& paper,
                                                  const std::vector<PaperRow>& exact,
                                                  const std::vector<DeviceSpec>& devices,
                                                  const std::vector<ModelArch>& models, const PaperReference& ref) {
  std::vector<std::filesystem::path> written;
  reports::HtmlReport r;
  r.title = "lifeline paper: decode throughput of 2-bit gate/up projections";
  const PaperDeviation dev = ComparePaper(paper, ref);
  r.intro.push_back(fmt::format(
      "Decode TPS of W4, W2 and W4/W2 gate-up for {} models on {} devices, paper fidelity. Largest difference from "
      "the {} published rows: {:.3f} TPS ({}), Gain% {:.3f} pp. Tables in Markdown, CSV, LaTeX and JSON are beside "
      "this file; decode_tps.csv is the machine-readable contract.",
      models.size(), devices.size(), dev.compared_rows, dev.max_tps_diff, dev.worst_tps, dev.max_gain_diff_pp));
  std::vector<reports::HtmlImage> images;
  if (reports::GnuplotAvailable()) {
    images = WritePaperFigures(paper, devices, models, out / "figures", out);
    for (const auto& i : images) {
      written.push_back(out / i.src);
      written.push_back(out / i.script);
    }
  } else {
    r.intro.push_back("gnuplot was not found: figures were skipped (install gnuplot-nox).");
  }
  reports::HtmlSection figs{"Figures", {"Each figure's gnuplot script and data are kept beside it in figures/."}, {}, images};
  r.sections.push_back(figs);
  for (const auto& d : devices) {
    reports::HtmlSection s;
    s.heading = "Decode TPS on " + d.name;
    s.tables.push_back(PaperTable(fmt::format("Decode TPS on {} (512-32k), ours / paper / difference", d.name), paper,
                                  d.name, kPaperContextsExtended, ref));
    r.sections.push_back(s);
  }
  reports::HtmlSection fid;
  fid.heading = "Paper fidelity vs exact architecture";
  fid.tables.push_back(FidelityTable(paper, exact));
  r.sections.push_back(fid);
  reports::WriteFileAtomic(out / "index.html", reports::ToHtml(r));
  written.push_back(out / "index.html");
  return written;
}

std::filesystem::path WriteWhatifHtml(const whatif::Scenario& scenario, const std::vector<whatif::Override>& fixed,
                                      const std::vector<whatif::SweepAxis>& axes, const std::string& baseline,
                                      const std::string& ceiling, const std::filesystem::path& dir, size_t top_ops) {
  const std::filesystem::path fig = dir / "figures";
  const whatif::Setting s = scenario.Resolve(fixed);
  const whatif::PointAnalysis a = whatif::Analyze(s);
  reports::HtmlReport r;
  r.title = "lifeline whatif: " + s.arch.name + " on " + s.device.name;
  std::string sets;
  for (const auto& o : fixed) sets += (sets.empty() ? "" : " ") + o.arg;
  r.intro.push_back(fmt::format("Model {}, device {}, plan {}, fusion {}, fidelity {}, batch {}, context {}, prompt {}{}.",
                                s.arch.name, s.device.name, s.plan.name, s.fusion, s.fidelity, s.decode.batch,
                                s.context, s.prompt, sets.empty() ? "" : "; overrides: " + sets));
  const bool plots = reports::GnuplotAvailable();
  if (!plots) r.intro.push_back("gnuplot was not found: figures were skipped.");
  reports::HtmlSection point{"Analysis of the base point", {}, whatif::AnalysisTables(a, s, top_ops), {}};
  if (plots) {
    point.images.push_back(Image(reports::WriteRooflineChart(RooflineOf(a, s), fig, "roofline"), dir,
                                 "Operator groups at their arithmetic intensity"));
    reports::StackedBars b;
    b.title = fmt::format("Decode step time by operator class: {} {} on {}, context {} tokens", s.arch.name,
                          s.plan.name, s.device.name, s.context);
    b.ylabel = "time per decode step (ms)";
    b.segments = ClassOrder();
    b.categories = {s.arch.name + " " + s.plan.name};
    b.values = {BreakdownMs(a)};
    point.images.push_back(Image(reports::WriteStackedBars(b, fig, "breakdown"), dir, "Decode step breakdown"));
  }
  r.sections.push_back(point);
  if (!axes.empty()) {
    reports::HtmlSection sw;
    sw.heading = "Sweep";
    const uint64_t n = whatif::GridSize(axes);
    whatif::SweepOptions so{baseline, ceiling};
    std::vector<std::vector<size_t>> idxs;
    std::vector<whatif::SweepMetrics> ms;
    const bool numeric = std::all_of(axes.begin(), axes.end(), [](const whatif::SweepAxis& ax) {
      return std::all_of(ax.values.begin(), ax.values.end(), IsNumber);
    });
    if (n <= 250000) {
      whatif::RunSweep(scenario, fixed, axes, so, [&](const std::vector<size_t>& i, const whatif::SweepMetrics& m) {
        idxs.push_back(i);
        ms.push_back(m);
      });
    }
    const bool gain = !baseline.empty();
    if (plots && numeric && axes.size() == 1 && !ms.empty()) {
      reports::LineChart c;
      c.title = fmt::format("{} over {}: {} {} on {}", gain ? "Gain% over " + baseline : std::string("Decode TPS"),
                            axes[0].key, s.arch.name, s.plan.name, s.device.name);
      c.xlabel = AxisLabel(axes[0].key);
      c.ylabel = gain ? "Gain (%) = 100 x (TPS / TPS(" + baseline + ") - 1)" : "decode throughput (tokens/s per sequence)";
      c.key_outside = false;
      reports::Series se;
      se.label = gain ? s.plan.name + " vs " + baseline : "decode TPS";
      for (size_t i = 0; i < ms.size(); ++i) {
        se.x.push_back(std::stod(axes[0].values[idxs[i][0]]));
        se.y.push_back(gain ? ms[i].gain_pct : ms[i].tps);
      }
      c.series.push_back(se);
      sw.images.push_back(Image(reports::WriteLineChart(c, fig, "sweep"), dir, c.title));
    } else if (plots && numeric && axes.size() == 2 && !ms.empty()) {
      reports::Heatmap h;
      h.title = fmt::format("{}: {} {} on {} (other keys as given)",
                            gain ? "Gain% of " + s.plan.name + " over " + baseline : std::string("Decode TPS"),
                            s.arch.name, s.plan.name, s.device.name);
      h.xlabel = AxisLabel(axes[1].key);
      h.ylabel = AxisLabel(axes[0].key);
      h.zlabel = gain ? "Gain (%)" : "decode tokens/s";
      for (const auto& v : axes[1].values) h.x.push_back(std::stod(v));
      for (const auto& v : axes[0].values) h.y.push_back(std::stod(v));
      h.z.assign(h.y.size(), std::vector<double>(h.x.size(), 0));
      for (size_t i = 0; i < ms.size(); ++i) h.z[idxs[i][0]][idxs[i][1]] = gain ? ms[i].gain_pct : ms[i].tps;
      sw.images.push_back(Image(reports::WriteHeatmap(h, fig, "sweep_heatmap"), dir, h.title));
    } else {
      sw.paragraphs.push_back(fmt::format("{} points over {} axes: figures are drawn for one or two numeric axes "
                                          "of at most 250,000 points; use --format csv for the numbers.",
                                          n, axes.size()));
    }
    if (!ms.empty() && ms.size() <= 200) {
      reports::Table t;
      t.title = "Sweep points";
      t.columns = whatif::SweepColumns(axes, so);
      for (size_t i = 0; i < ms.size(); ++i) {
        std::vector<reports::Cell> row;
        for (size_t k = 0; k < axes.size(); ++k) row.emplace_back(axes[k].values[idxs[i][k]]);
        for (double v : {ms[i].tps, ms[i].tpot_s, ms[i].batch_tps, ms[i].ttft_s, ms[i].elasticity_bandwidth,
                         ms[i].elasticity_tops})
          row.emplace_back(v, 4);
        if (gain) {
          row.emplace_back(ms[i].tps_baseline, 3);
          row.emplace_back(ms[i].gain_pct, 2);
        }
        if (!ceiling.empty()) {
          row.emplace_back(ms[i].tps_ceiling, 3);
          row.emplace_back(ms[i].capture_pct, 2);
        }
        t.rows.push_back(row);
      }
      sw.tables.push_back(t);
    }
    r.sections.push_back(sw);
  }
  std::filesystem::create_directories(dir);
  const auto path = dir / "index.html";
  reports::WriteFileAtomic(path, reports::ToHtml(r));
  return path;
}

}  // namespace lifeline::cli
