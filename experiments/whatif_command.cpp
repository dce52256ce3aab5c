// `lifeline whatif`: one setting with overrides, or a sweep over a grid, with
// the analysis hardware architects ask for.

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>

#include "experiments/commands.hpp"
#include "experiments/whatif_tables.hpp"
#include "experiments/whatif_serving.hpp"
#include "experiments/whatif_deploy.hpp"
#include "experiments/figures.hpp"
#include "reports/table.hpp"
#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/progress.hpp"

namespace lifeline::cli {
namespace {

struct WhatifOptions {
  whatif::RunSpec run;
  std::vector<std::string> sets;
  std::vector<std::string> sweeps;
  std::string baseline, ceiling;
  std::string format = "table";
  std::string out;
  std::string html;
  size_t top = 12;
  bool quiet = false;
  uint64_t max_points = whatif::kDefaultMaxSweepPoints;  // largest grid a sweep may write
  ServingCli serving;         // --system, --tp/--pp/--ep, --output-tokens, --best
  bool device_given = false;  // --device on the command line
};

// Buffered writer to stdout or a file (streams big sweeps). The file is
// written through AtomicFile and appears once Commit() is called.
class Sink {
 public:
  explicit Sink(const std::string& path) {
    if (!path.empty()) file_.emplace(path, "--out");
    buf_.reserve(kFlush + 4096);
  }
  std::string& buf() { return buf_; }
  void MaybeFlush() {
    if (buf_.size() >= kFlush) Flush();
  }
  void Flush() {
    if (file_) {
      file_->Write(buf_);
    } else if (!buf_.empty()) {
      std::fwrite(buf_.data(), 1, buf_.size(), stdout);
      std::fflush(stdout);
    }
    buf_.clear();
  }
  // Writes what is left and completes the file.
  void Commit() {
    Flush();
    if (file_) file_->Commit();
  }

 private:
  static constexpr size_t kFlush = 1 << 20;
  std::optional<AtomicFile> file_;
  std::string buf_;
};

// `v` as fmt's "{:.7g}" (printf's %.7g) writes it, through std::to_chars:
// half the time of fmt's formatter on the CSV sweep's per-value path.
void AppendG7(std::string& b, double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 7);
  b.append(buf, r.ptr);
}

std::string JsonString(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r + "\"";
}

// A sweep value as JSON: a number when it parses as one, else a string.
std::string JsonValue(const std::string& s) {
  size_t used = 0;
  try {
    (void)std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  return used == s.size() && used > 0 ? s : JsonString(s);
}

std::string Render(const std::vector<reports::Table>& tables, const std::string& format) {
  std::string text;
  if (format == "json") {
    text = "[\n";
    for (size_t i = 0; i < tables.size(); ++i) text += (i ? ",\n" : "") + reports::ToJson(tables[i]);
    return text + "]\n";
  }
  for (size_t i = 0; i < tables.size(); ++i) {
    if (i) text += "\n";
    if (format == "table") text += reports::ToText(tables[i]);
    else if (format == "md") text += reports::ToMarkdown(tables[i]);
    else if (format == "csv") text += "# " + tables[i].title + "\n" + reports::ToCsv(tables[i]);
  }
  return text;
}

void RunWhatif(const WhatifOptions& given) {
  // Deployment keys (speculative.*, prefill_chunk_tokens) are evaluated by
  // whatif_deploy; the rest as whatif keys.
  WhatifOptions o = given;
  std::vector<std::string> deploy_sets, deploy_sweeps;
  o.sets.clear();
  o.sweeps.clear();
  for (const auto& s : given.sets) (IsDeployArg(s, "--set") ? deploy_sets : o.sets).push_back(s);
  for (const auto& s : given.sweeps) (IsDeployArg(s, "--sweep") ? deploy_sweeps : o.sweeps).push_back(s);
  if ((!deploy_sets.empty() || !deploy_sweeps.empty()) && (o.serving.Active() || !o.html.empty())) {
    throw MakeConfigError(deploy_sets.empty() ? "--sweep " + deploy_sweeps[0] : "--set " + deploy_sets[0], "",
                          "speculative decoding and chunked prefill are evaluated on one device, without --html",
                          "no --system/--tp/--pp/--ep/--best/--html beside speculative.* or prefill_chunk_tokens", "");
  }
  if (o.format != "table" && o.format != "md" && o.format != "csv" && o.format != "json") {
    throw MakeConfigError("--format", "format", "unknown format '" + o.format + "'", "table, md, csv or json", "");
  }
  // Before any work: the report directory must be usable.
  if (!o.html.empty()) CreateOutputDirectory(o.html, "--html");
  if (o.serving.Active()) {
    Sink sink(o.out);
    sink.buf() += Render(ServingWhatif(o.run, o.device_given, o.serving, o.sets, o.sweeps, o.html), o.format);
    sink.Commit();
    return;
  }
  std::vector<whatif::Override> fixed;
  for (const auto& s : o.sets) fixed.push_back(whatif::ParseSetArg(s));
  std::vector<whatif::SweepAxis> axes;
  for (const auto& s : o.sweeps) axes.push_back(whatif::ParseSweepArg(s));
  const whatif::Scenario scenario(o.run);
  const whatif::Setting base = scenario.Resolve(fixed);
  for (const auto& w : ModelWarnings(base.arch, base.context)) std::cerr << "warning: " << w << "\n";
  const whatif::PointAnalysis analysis = whatif::Analyze(base);
  std::vector<reports::Table> tables = whatif::AnalysisTables(analysis, base, o.top);
  // A plan with adapters adds their cost to one point; a sweep gets the
  // deployment columns when it sweeps adapter keys or sets deployment keys
  // (other sweeps of such a plan stream as usual, adapters included).
  bool adapter_axis = false;
  for (const auto& a : axes) adapter_axis = adapter_axis || a.key.rfind("plan.adapters.", 0) == 0;
  const bool deploy_grid = adapter_axis || !deploy_sets.empty() || !deploy_sweeps.empty();
  if (DeployActive(base, deploy_sets, deploy_sweeps) && (axes.empty() || deploy_grid)) {
    std::vector<reports::Table> d = DeployTables(scenario, o.sets, o.sweeps, deploy_sets, deploy_sweeps);
    if (axes.empty() && deploy_sweeps.empty()) {
      tables.insert(tables.begin() + 1, d.begin(), d.end());
    } else {
      tables.insert(tables.begin(), d.begin(), d.end());
    }
    if (!axes.empty() || !deploy_sweeps.empty()) {
      Sink sink(o.out);
      sink.buf() += Render(tables, o.format);
      sink.Commit();
      return;
    }
  }

  if (axes.empty()) {
    Sink sink(o.out);
    sink.buf() += Render(tables, o.format);
    sink.Commit();
  } else {
    whatif::SweepOptions so{o.baseline, o.ceiling};
    const uint64_t total = whatif::GridSize(axes);
    if (total > o.max_points) {
      const std::string count = total == std::numeric_limits<uint64_t>::max() ? "more than 1.8e19"
                                                                             : fmt::format("{}", total);
      throw MakeConfigError(fmt::format("--sweep {}", fmt::join(o.sweeps, " --sweep ")), "",
                            fmt::format("the grid has {} points, beyond the limit of {} (--max-points)", count,
                                        o.max_points),
                            fmt::format("at most {} points", o.max_points),
                            total == std::numeric_limits<uint64_t>::max()
                                ? std::string("narrow the axes")
                                : fmt::format("narrow the axes, or pass --max-points {} if you mean it (a CSV row "
                                              "is about 100 bytes)",
                                              total));
    }
    const std::vector<std::string> cols = whatif::SweepColumns(axes, so);
    const bool streaming = o.format == "csv" || o.format == "json";
    if (!streaming && total > 5000) {
      throw MakeConfigError("--sweep", fmt::format("{} points", total), "too many rows for a terminal table",
                            "at most 5000 points with --format table or md",
                            "use --format csv (streamed) or --format json, with --out FILE");
    }
    reports::Table sweep_table;
    sweep_table.title = fmt::format("Sweep of {} points over {} on {} / {} / {}", total, fmt::join(o.sweeps, " "),
                                    base.arch.name, base.device.name, base.plan.name);
    sweep_table.columns = cols;
    ProgressLine line(o.quiet ? ProgressLine::Mode::kOff : ProgressLine::Mode::kTerminal);
    Sink sink(o.out);
    if (o.format == "csv") sink.buf() += fmt::format("{}\n", fmt::join(cols, ","));
    if (o.format == "json") sink.buf() += "[\n";
    bool first = true;
    uint64_t undefined = 0;  // grid points whose capture_pct is undefined
    auto metric_values = [&](const whatif::SweepMetrics& m, auto&& put) {
      put(m.tps);
      put(m.tpot_s);
      put(m.batch_tps);
      put(m.ttft_s);
      put(m.elasticity_bandwidth);
      put(m.elasticity_tops);
      if (!so.baseline_plan.empty()) {
        put(m.tps_baseline);
        put(m.gain_pct);
      }
      if (!so.ceiling_plan.empty()) {
        put(m.tps_ceiling);
        put(m.capture_pct);
      }
    };
    whatif::RunSweep(
        scenario, fixed, axes, so,
        [&](const std::vector<size_t>& idx, const whatif::SweepMetrics& m) {
          std::string& b = sink.buf();
          if (o.format == "csv") {
            for (size_t i = 0; i < idx.size(); ++i) {
              b += axes[i].values[idx[i]];
              b += ',';
            }
            bool firstm = true;
            metric_values(m, [&](double v) {
              if (!firstm) b += ',';
              firstm = false;
              if (std::isnan(v)) ++undefined;  // an undefined capture_pct: empty field
              else AppendG7(b, v);
            });
            {
              char num[24];
              const auto end = std::to_chars(num, num + sizeof num, std::llround(m.footprint_bytes)).ptr;
              b += ',';
              b.append(num, end);
              b += m.fits ? ",true" : ",false";
            }
            b += '\n';
            sink.MaybeFlush();
          } else if (o.format == "json") {
            b += first ? "  {" : ",\n  {";
            first = false;
            size_t c = 0;
            for (size_t i = 0; i < idx.size(); ++i, ++c)
              fmt::format_to(std::back_inserter(b), "{}{}: {}", c ? ", " : "", JsonString(cols[c]),
                             JsonValue(axes[i].values[idx[i]]));
            metric_values(m, [&](double v) {
              if (std::isnan(v)) ++undefined;
              if (std::isnan(v)) fmt::format_to(std::back_inserter(b), ", {}: null", JsonString(cols[c]));
              else fmt::format_to(std::back_inserter(b), ", {}: {:.7g}", JsonString(cols[c]), v);
              ++c;
            });
            fmt::format_to(std::back_inserter(b), ", {}: {:.0f}, {}: {}", JsonString(cols[c]), m.footprint_bytes,
                           JsonString(cols[c + 1]), m.fits);
            b += "}";
            sink.MaybeFlush();
          } else {
            std::vector<reports::Cell> r;
            for (size_t i = 0; i < idx.size(); ++i) r.emplace_back(axes[i].values[idx[i]]);
            metric_values(m, [&](double v) {
              if (std::isnan(v)) ++undefined;
              if (std::isnan(v)) r.emplace_back("undefined");
              else r.emplace_back(v, 4);
            });
            r.emplace_back(m.footprint_bytes, 0);
            r.emplace_back(m.fits ? "true" : "false");
            sweep_table.rows.push_back(std::move(r));
          }
        },
        [&](uint64_t done, uint64_t all) {
          if (done != all && !line.Due()) return;
          const double s = line.ElapsedSeconds();
          const double rate = s > 0 ? static_cast<double>(done) / s : 0;
          const std::string text = fmt::format(
              "whatif: {}/{} points ({:.1f}%), {:.2f} M points/s, ETA {:.1f} s", done, all,
              100.0 * static_cast<double>(done) / static_cast<double>(all), rate / 1e6,
              rate > 0 ? static_cast<double>(all - done) / rate : 0.0);
          if (done == all) line.Finish(text);
          else line.Update(text);
        });
    if (o.format == "json") sink.buf() += "\n]\n";
    const std::string undefined_note =
        undefined == 0 ? ""
        : o.baseline == o.ceiling
            ? fmt::format("capture_pct is undefined at every point: --baseline and --ceiling are the same plan ({}), so "
                          "Capture% = (TPS - TPS(baseline)) / (TPS(ceiling) - TPS(baseline)) divides by 0; choose "
                          "another --ceiling",
                          o.baseline)
            : fmt::format("capture_pct is undefined at {} of {} points, where TPS({}) equals TPS({}) (0/0); left {}",
                          undefined, total, o.ceiling, o.baseline,
                          o.format == "csv" ? "empty" : o.format == "json" ? "null" : "'undefined'");
    if (!undefined_note.empty()) sweep_table.notes.push_back(undefined_note);
    if (!streaming) {
      tables.insert(tables.begin(), sweep_table);
      sink.buf() += Render(tables, o.format);
    }
    sink.Commit();
    if (!undefined_note.empty() && streaming) std::fprintf(stderr, "whatif: %s\n", undefined_note.c_str());
    if (line.on()) {
      const double s = line.ElapsedSeconds();
      std::fprintf(stderr, "whatif: %llu points in %.2f s (%.2f M points/s)\n", static_cast<unsigned long long>(total),
                   s, static_cast<double>(total) / s / 1e6);
    }
  }
  if (!o.html.empty()) {
    const auto written = WriteWhatifHtml(scenario, fixed, axes, o.baseline, o.ceiling, o.html, o.top);
    std::cerr << "wrote " << written.string() << "\n";
  }
}

}  // namespace

void AddWhatifCommand(CLI::App& app) {
  auto o = std::make_shared<WhatifOptions>();
  CLI::App* sub = app.add_subcommand(
      "whatif",
      "What if the chip had more bandwidth, more TOPS, an INT4 KV cache...? One setting with --set overrides, or a "
      "grid with --sweep; prints throughput, TTFT, the dominant operators, bounds, ridge point, elasticities and "
      "where the step flips from memory- to compute-bound.");
  sub->add_option("--model", o->run.model, "zoo name or YAML/config.json path")->capture_default_str();
  sub->add_option("--device", o->run.device, "hwspec name or YAML path")
      ->capture_default_str()
      ->each([o](const std::string&) { o->device_given = true; });
  sub->add_option("--plan", o->run.plan, "quantization preset or plan YAML")->capture_default_str();
  sub->add_option("--fusion", o->run.fusion, "none or paper")->capture_default_str();
  sub->add_option("--fidelity", o->run.fidelity, "paper or exact")->capture_default_str();
  sub->add_option("--context", o->run.context, "attended context in tokens (decode)")->capture_default_str();
  sub->add_option("--prompt", o->run.prompt, "prompt tokens (prefill, TTFT)")->capture_default_str();
  sub->add_option("--batch", o->run.batch, "sequences per step")->capture_default_str();
  sub->add_option("--set", o->sets,
                  "override KEY=VALUE, validated like the YAML: device keys as in hwspec/*.yaml "
                  "(memory_bandwidth_gb_per_s=150, efficiency.memory=0.7), model.<key> (model.num_hidden_layers=24), "
                  "plan.kv_cache_dtype=int4, plan.rules.N.bits=3; repeatable")
      ->take_all();
  sub->add_option("--sweep", o->sweeps,
                  "sweep KEY=START:STOP:STEP (inclusive) or KEY=V1,V2,...; keys as for --set plus context, prompt, "
                  "batch, fusion, fidelity; several give the cartesian grid (first slowest)")
      ->take_all();
  sub->add_option("--baseline", o->baseline, "sweeps: add tps_baseline and gain_pct against this plan (e.g. w4)");
  sub->add_option("--ceiling", o->ceiling, "sweeps: add tps_ceiling and capture_pct against this plan (e.g. w2)");
  sub->add_option("--format", o->format, "table, md, csv or json (sweeps stream csv/json)")->capture_default_str();
  sub->add_option("--out", o->out, "write to this file instead of stdout");
  sub->add_option("--top", o->top, "operator groups shown (1 to 10000)")
      ->check(CLI::Range(size_t{1}, size_t{10000}))
      ->capture_default_str();
  sub->add_option("--html", o->html, "also write an HTML report with figures into this directory");
  sub->add_option("--max-points", o->max_points, "largest sweep grid accepted (raise it for bigger grids)")
      ->check(CLI::Range(uint64_t{1}, std::numeric_limits<uint64_t>::max()))
      ->capture_default_str();
  sub->add_flag("--quiet", o->quiet, "no progress line");
  AddServingOptions(sub, o->serving);
  sub->callback([o] { RunWhatif(*o); });
}

}  // namespace lifeline::cli
