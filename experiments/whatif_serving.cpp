#include "experiments/whatif_serving.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "reports/html.hpp"
#include "reports/plot.hpp"

namespace lifeline::cli {
namespace {

using reports::Cell;
using reports::Table;

// Axes a serving sweep handles itself (the others are whatif keys).
const std::vector<std::string>& LayoutKeys() {
  static const std::vector<std::string> k = {"tp", "pp", "ep", "micro_batches", "output_tokens"};
  return k;
}
bool IsLayoutKey(const std::string& k) {
  return std::find(LayoutKeys().begin(), LayoutKeys().end(), k) != LayoutKeys().end();
}

// Largest serving grid: each point builds its graphs.
constexpr uint64_t kMaxServingPoints = 100000;

int64_t ParseCount(const std::string& text, const std::string& key, const std::string& arg, int64_t min) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < min) {
    throw MakeConfigError(arg, key, "'" + text + "' is not an integer >= " + std::to_string(min),
                          "an integer >= " + std::to_string(min), "");
  }
  return v;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

// "key=a:b:xF" (multiplicative, inclusive), "key=a:b:s" or "key=v1,v2".
whatif::SweepAxis ParseServingAxis(const std::string& arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw MakeConfigError("--sweep " + arg, arg, "not KEY=VALUES", "KEY=START:STOP:STEP, KEY=START:STOP:xFACTOR or KEY=V1,V2,...", "");
  }
  const std::string key = Trim(arg.substr(0, eq));
  const std::string value = Trim(arg.substr(eq + 1));
  const std::string where = "--sweep " + arg;
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t p = value.find(':', start);
    parts.push_back(Trim(value.substr(start, p == std::string::npos ? std::string::npos : p - start)));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  std::vector<std::string> values;
  if (parts.size() == 3 && !parts[2].empty() && parts[2][0] == 'x') {
    const int64_t a = ParseCount(parts[0], key, where, 1), b = ParseCount(parts[1], key, where, 1);
    const int64_t f = ParseCount(parts[2].substr(1), key, where, 2);
    if (b < a) throw MakeConfigError(where, key, "stop is below start", "START <= STOP for a factor step", "");
    for (int64_t v = a; v <= b; v *= f) {
      values.push_back(std::to_string(v));
      if (values.size() > kMaxServingPoints) break;
    }
  } else if (IsLayoutKey(key)) {
    if (parts.size() == 3) {
      const int64_t a = ParseCount(parts[0], key, where, 0), b = ParseCount(parts[1], key, where, 0);
      const int64_t s = ParseCount(parts[2], key, where, 1);
      for (int64_t v = a; v <= b; v += s) {
        values.push_back(std::to_string(v));
        if (values.size() > kMaxServingPoints) break;
      }
    } else if (parts.size() == 1) {
      for (size_t start = 0;;) {
        const size_t p = value.find(',', start);
        values.push_back(Trim(value.substr(start, p == std::string::npos ? std::string::npos : p - start)));
        if (p == std::string::npos) break;
        start = p + 1;
      }
    } else {
      throw MakeConfigError(where, key, "'" + value + "' is not a range", "START:STOP:STEP, START:STOP:xF or V1,V2,...", "");
    }
    for (const auto& v : values) (void)ParseCount(v, key, where, key == "micro_batches" || key == "output_tokens" ? 0 : 1);
  } else {
    return whatif::ParseSweepArg(arg);  // a whatif key: its own parser and checks
  }
  if (values.empty()) throw MakeConfigError(where, key, "no values", "at least one value", "");
  if (values.size() > kMaxServingPoints) {
    throw MakeConfigError(where, key, "more than " + std::to_string(kMaxServingPoints) + " values",
                          "a shorter range", "");
  }
  if (IsLayoutKey(key)) return whatif::SweepAxis{key, values, where};
  return whatif::ParseSweepArg(key + "=" + Join(values));
}

void SetLayoutKey(ServingCli& s, const std::string& key, int64_t v) {
  if (key == "tp") s.tp = v;
  else if (key == "pp") s.pp = v;
  else if (key == "ep") s.ep = v;
  else if (key == "micro_batches") s.micro_batches = v;
  else if (key == "output_tokens") s.output_tokens = v;
}

SystemSpec SystemOf(const ServingCli& s, const whatif::Setting& setting, const SystemSpec* loaded) {
  SystemSpec sys = loaded ? *loaded : SingleDeviceSystem(setting.device);
  sys.device = setting.device;  // with the --set device overrides applied
  return sys;
}

std::string FitsText(const whatif::ServingPoint& p) { return p.fits ? "yes" : "no"; }

Table PointTable(const whatif::Setting& st, const SystemSpec& sys, const whatif::ServingPoint& p, int64_t largest) {
  Table t;
  t.title = fmt::format("Serving {} / {} on {} ({} x {}, {} link {:g} GB/s, latency {:g} s): tp {} pp {} ep {}, "
                        "batch {}, context {}, prompt {}",
                        st.arch.name, st.plan.name, sys.name, sys.count, sys.device.name,
                        TopologyName(sys.interconnect.topology), sys.interconnect.link_bytes_per_s / 1e9,
                        sys.interconnect.latency_s, p.layout.tp, p.layout.pp, p.layout.ep, p.batch, st.context,
                        st.prompt);
  t.columns = {"quantity", "value", "what it is"};
  auto row = [&](const std::string& k, Cell v, const std::string& what) { t.rows.push_back({k, std::move(v), what}); };
  row("fidelity", st.fidelity, "architecture fidelity of the graphs");
  row("devices", Cell::Int(p.layout.Devices()), "tp x pp x ep");
  row("micro_batches", Cell::Int(p.layout.micro_batches), "pipeline micro-batches per attention group");
  row("micro_batch", Cell::Int(p.decode.micro_batch), "sequences per micro-batch");
  row("tpot_s", Cell(p.tpot_s, 6), "decode: time between two tokens of a sequence");
  row("tps_per_sequence", Cell(p.tps_per_sequence, 3), "1 / tpot_s");
  row("tokens_per_s", Cell(p.tokens_per_s, 2), "batch / tpot_s, the whole system");
  row("ttft_s", Cell(p.ttft_s, 6), "prefill of every sequence's prompt");
  if (p.output_tokens > 0) {
    row("request_latency_s", Cell(p.request_latency_s, 6),
        fmt::format("ttft_s + TPOT summed over output tokens 2..{} (context prompt + j)", p.output_tokens));
  }
  row("tp_allreduce_message_bytes", Cell(p.decode.tp_allreduce_message_bytes, 0), "tokens x hidden x 2 (BF16)");
  row("tp_allreduce_bytes_per_layer", Cell(p.decode.tp_allreduce_bytes_per_layer, 0),
      "sent per device per layer: 2 all-reduces x 2 (n-1)/n x message");
  row("tp_comm_s", Cell(p.decode.tp_comm_s, 6), "decode: all-reduces of one micro-batch, all stages");
  row("ep_alltoall_bytes_per_layer", Cell(p.decode.ep_alltoall_bytes_per_layer, 0),
      "sent per device per MoE layer: dispatch + combine");
  row("ep_comm_s", Cell(p.decode.ep_comm_s, 6), "decode: all-to-alls of one micro-batch, all stages");
  row("pp_transfer_bytes", Cell(p.decode.pp_transfer_bytes, 0), "activations between two stages per micro-batch");
  row("pp_comm_s", Cell(p.decode.pp_comm_s, 6), "decode: (pp - 1) stage-to-stage transfers");
  for (size_t i = 0; i < p.decode.stage_s.size(); ++i)
    row(fmt::format("stage_{}_s", i), Cell(p.decode.stage_s[i], 6), "decode: one micro-batch in this stage, collectives included");
  row("bubble_fraction", Cell(p.decode.bubble_fraction, 4), "decode: share of a stage's time it idles");
  row("weight_bytes_per_device", Cell(p.footprint.weight_bytes, 0), "fullest device: stored weights of its shard");
  row("kv_cache_bytes_per_device", Cell(p.footprint.kv_cache_bytes, 0),
      fmt::format("fullest device: KV cache at {} tokens", p.capacity_context));
  row("workspace_bytes_per_device", Cell(p.footprint.activation_workspace_bytes, 0), "largest operator's activations");
  row("footprint_bytes_per_device", Cell(p.footprint.total_bytes, 0), "weights + KV cache + workspace");
  row("memory_capacity_bytes", sys.device.memory_capacity_bytes > 0 ? Cell(sys.device.memory_capacity_bytes, 0) : Cell("not stated"),
      "memory_capacity_gb of the device");
  row("fits", FitsText(p), p.fits ? "decode and prefill fit every device" : p.why_not_fits);
  row("largest_batch", Cell::Int(largest),
      fmt::format("largest batch whose KV cache at {} tokens fits (this layout)", p.capacity_context));
  if (!p.fits) t.notes.push_back("infeasible: " + p.why_not_fits);
  return t;
}

// One curve per combination of the axes other than batch: system tokens/s
// against TPOT, points in batch order, those that fit only.
struct CurvePoint {
  std::string series;
  double tpot_s, tokens_per_s;
  bool fits;
};

void WriteServingHtml(const std::string& dir, const std::string& title, const std::vector<Table>& tables,
                      const std::vector<CurvePoint>& curve) {
  const std::filesystem::path d(dir);
  reports::HtmlReport r;
  r.title = title;
  reports::HtmlSection sec{"Serving", {}, tables, {}};
  if (!curve.empty()) {
    if (!reports::GnuplotAvailable()) {
      sec.paragraphs.push_back("gnuplot was not found: the throughput-latency figure was skipped.");
    } else {
      reports::LineChart c;
      c.title = "Throughput vs latency over the batch (points that fit the memory)";
      c.xlabel = "TPOT (ms between two tokens of a sequence)";
      c.ylabel = "output tokens/s of the whole system";
      c.key_outside = false;
      size_t left_out = 0;
      for (const auto& p : curve) {
        if (!p.fits) {
          ++left_out;
          continue;
        }
        auto it = std::find_if(c.series.begin(), c.series.end(),
                               [&](const reports::Series& se) { return se.label == p.series; });
        if (it == c.series.end()) {
          c.series.push_back(reports::Series{p.series, {}, {}, "", false});
          it = c.series.end() - 1;
        }
        it->x.push_back(p.tpot_s * 1e3);
        it->y.push_back(p.tokens_per_s);
      }
      if (left_out > 0)
        sec.paragraphs.push_back(fmt::format("{} points that do not fit the memory are left out of the figure.", left_out));
      if (!c.series.empty()) {
        const reports::Figure f = reports::WriteLineChart(c, d / "figures", "throughput_latency");
        sec.images.push_back(reports::HtmlImage{"figures/" + f.png.filename().string(), c.title,
                                                "figures/" + f.script.filename().string()});
      }
    }
  }
  r.sections.push_back(std::move(sec));
  std::filesystem::create_directories(d);
  reports::WriteFileAtomic(d / "index.html", reports::ToHtml(r), "--html");
}

}  // namespace

void AddServingOptions(CLI::App* sub, ServingCli& o) {
  sub->add_option("--system", o.system,
                  "several devices with an interconnect: a name in hwspec/systems/ or a system YAML (replaces --device)");
  sub->add_option("--tp", o.tp, "tensor-parallel degree (devices sharing each layer)")->capture_default_str();
  sub->add_option("--pp", o.pp, "pipeline stages")->capture_default_str();
  sub->add_option("--ep", o.ep, "expert-parallel degree (MoE models)")->capture_default_str();
  sub->add_option("--micro-batches", o.micro_batches,
                  "pipeline micro-batches (0: the largest divisor of batch/ep that is <= pp)")
      ->capture_default_str();
  sub->add_option("--output-tokens", o.output_tokens,
                  "request length: adds request_latency_s = TTFT + the TPOT of each later token")
      ->check(CLI::Range(int64_t{0}, kMaxContextTokens));
  sub->add_flag("--best", o.best,
                "search tp, pp, ep and batch on --system for the highest tokens/s under --max-tpot-s/--max-ttft-s");
  sub->add_option("--max-tpot-s", o.max_tpot_s, "--best: largest TPOT allowed (seconds)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-ttft-s", o.max_ttft_s, "--best: largest TTFT allowed (seconds)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-batch", o.max_batch, "--best: largest batch tried")
      ->check(CLI::Range(int64_t{1}, kMaxBatch))
      ->capture_default_str();
}

std::vector<reports::Table> ServingWhatif(whatif::RunSpec run, bool device_given, const ServingCli& s,
                                          const std::vector<std::string>& sets,
                                          const std::vector<std::string>& sweeps, const std::string& html_dir) {
  std::optional<SystemSpec> loaded;
  if (!s.system.empty()) {
    if (device_given) {
      throw MakeConfigError("--device", run.device, "given beside --system",
                            "either --device (one device) or --system (its device is the system's `device:`)", "");
    }
    loaded = ResolveSystemSpec(s.system);
    run.device = loaded->device_path;
  } else if (s.best) {
    throw MakeConfigError("--best", "system", "needs a system to search", "--system NAME or a system YAML",
                          "hwspec/systems/ lists the shipped systems");
  }
  std::vector<whatif::Override> fixed;
  for (const auto& a : sets) fixed.push_back(whatif::ParseSetArg(a));
  const whatif::Scenario scenario(run);
  std::vector<Table> tables;

  if (s.best) {
    if (!sweeps.empty()) throw MakeConfigError("--best", "sweep", "given with --sweep", "one of --best or --sweep", "");
    const whatif::Setting st = scenario.Resolve(fixed);
    const SystemSpec sys = SystemOf(s, st, loaded ? &*loaded : nullptr);
    whatif::BestOptions bo;
    bo.max_tpot_s = s.max_tpot_s;
    bo.max_ttft_s = s.max_ttft_s;
    bo.max_batch = s.max_batch;
    bo.output_tokens = s.output_tokens;
    const whatif::BestResult r = whatif::SearchBest(st, sys, bo);
    Table t;
    t.title = fmt::format("Best layout for {} / {} on {} ({} x {}) at context {}, prompt {}: {}", st.arch.name,
                          st.plan.name, sys.name, sys.count, sys.device.name, st.context, st.prompt,
                          r.found() ? "found" : "no candidate meets the limits");
    t.columns = {"rank", "tp", "pp", "ep", "micro_batches", "batch", "devices", "tokens_per_s", "tpot_s", "ttft_s",
                 "request_latency_s", "footprint_bytes_per_device", "fits", "verdict"};
    int rank = 0;
    for (const auto& c : r.candidates) {
      const auto& p = c.point;
      t.rows.push_back({c.ok ? Cell::Int(++rank) : Cell("-"), Cell::Int(p.layout.tp), Cell::Int(p.layout.pp),
                        Cell::Int(p.layout.ep), Cell::Int(p.layout.micro_batches), Cell::Int(p.batch),
                        Cell::Int(p.layout.Devices()), Cell(p.tokens_per_s, 2), Cell(p.tpot_s, 6), Cell(p.ttft_s, 6),
                        p.output_tokens > 0 ? Cell(p.request_latency_s, 6) : Cell(),
                        Cell(p.footprint.total_bytes, 0), FitsText(p), c.verdict});
    }
    t.notes.push_back(fmt::format("limits: TPOT <= {} s, TTFT <= {} s; batches 1, 2, 4, ... (times ep) up to the "
                                  "largest that fits, at most {}; {} layouts searched, {} candidates",
                                  std::isinf(s.max_tpot_s) ? std::string("inf") : fmt::format("{:g}", s.max_tpot_s),
                                  std::isinf(s.max_ttft_s) ? std::string("inf") : fmt::format("{:g}", s.max_ttft_s),
                                  s.max_batch, r.layouts_tried, r.candidates.size()));
    for (const auto& bad : r.invalid_layouts) t.notes.push_back("not possible: " + bad);
    tables.push_back(std::move(t));
    if (r.found()) {
      const auto& w = r.candidates.front().point;
      tables.push_back(PointTable(st, sys, w, whatif::LargestBatch(st, sys, w.layout, w.capacity_context)));
    }
    if (!html_dir.empty()) WriteServingHtml(html_dir, tables.front().title, tables, {});
    return tables;
  }

  if (sweeps.empty()) {
    const whatif::Setting st = scenario.Resolve(fixed);
    const SystemSpec sys = SystemOf(s, st, loaded ? &*loaded : nullptr);
    const ParallelConfig layout{s.tp, s.pp, s.ep, s.micro_batches};
    const whatif::ServingPoint p = whatif::EvaluateServing(st, sys, layout, st.decode.batch, s.output_tokens);
    tables.push_back(PointTable(st, sys, p, whatif::LargestBatch(st, sys, layout, p.capacity_context)));
    if (!html_dir.empty()) WriteServingHtml(html_dir, tables.front().title, tables, {});
    return tables;
  }

  std::vector<whatif::SweepAxis> axes;
  for (const auto& a : sweeps) axes.push_back(ParseServingAxis(a));
  uint64_t total = 1;
  for (const auto& ax : axes) {
    total *= ax.values.size();
    if (total > kMaxServingPoints) {
      throw MakeConfigError("--sweep", "grid", fmt::format("more than {} points", kMaxServingPoints),
                            fmt::format("at most {} points for a system sweep (each builds its graphs)",
                                        kMaxServingPoints),
                            "narrow the axes");
    }
  }
  bool latency = s.output_tokens > 0;
  for (const auto& ax : axes) latency = latency || ax.key == "output_tokens";
  Table t;
  t.title = fmt::format("Serving sweep of {} points on {}", total, loaded ? loaded->name : run.device);
  for (const auto& ax : axes) t.columns.push_back(ax.key);
  for (const char* c : {"devices", "micro_batches", "tpot_s", "tps_per_sequence", "tokens_per_s", "ttft_s"})
    t.columns.push_back(c);
  if (latency) t.columns.push_back("request_latency_s");
  for (const char* c : {"tp_comm_s", "ep_comm_s", "pp_comm_s", "bubble_fraction", "footprint_bytes_per_device",
                        "fits", "note"})
    t.columns.push_back(c);
  std::vector<size_t> idx(axes.size(), 0);
  uint64_t infeasible = 0;
  std::vector<CurvePoint> curve;
  const bool batch_axis = std::any_of(axes.begin(), axes.end(), [](const whatif::SweepAxis& a) { return a.key == "batch"; });
  for (uint64_t n = 0; n < total; ++n) {
    ServingCli point = s;
    std::vector<whatif::Override> ov = fixed;
    for (size_t i = 0; i < axes.size(); ++i) {
      const std::string& v = axes[i].values[idx[i]];
      if (IsLayoutKey(axes[i].key)) SetLayoutKey(point, axes[i].key, std::stoll(v));
      else ov.push_back(whatif::Override{axes[i].key, v, axes[i].arg});
    }
    const whatif::Setting st = scenario.Resolve(ov);
    const SystemSpec sys = SystemOf(s, st, loaded ? &*loaded : nullptr);
    const whatif::ServingPoint p = whatif::EvaluateServing(
        st, sys, ParallelConfig{point.tp, point.pp, point.ep, point.micro_batches}, st.decode.batch,
        point.output_tokens);
    std::vector<Cell> r;
    for (size_t i = 0; i < axes.size(); ++i) r.emplace_back(axes[i].values[idx[i]]);
    r.push_back(Cell::Int(p.layout.Devices()));
    r.push_back(Cell::Int(p.layout.micro_batches));
    r.emplace_back(p.tpot_s, 6);
    r.emplace_back(p.tps_per_sequence, 3);
    r.emplace_back(p.tokens_per_s, 2);
    r.emplace_back(p.ttft_s, 6);
    if (latency) r.push_back(p.output_tokens > 0 ? Cell(p.request_latency_s, 6) : Cell());
    r.emplace_back(p.decode.tp_comm_s, 6);
    r.emplace_back(p.decode.ep_comm_s, 6);
    r.emplace_back(p.decode.pp_comm_s, 6);
    r.emplace_back(p.decode.bubble_fraction, 4);
    r.emplace_back(p.footprint.total_bytes, 0);
    r.emplace_back(FitsText(p));
    r.emplace_back(p.fits ? std::string() : "infeasible: " + p.why_not_fits);
    infeasible += p.fits ? 0 : 1;
    if (batch_axis) {
      std::string label;
      for (size_t i = 0; i < axes.size(); ++i)
        if (axes[i].key != "batch") label += (label.empty() ? "" : ", ") + axes[i].key + " " + axes[i].values[idx[i]];
      curve.push_back(CurvePoint{label.empty() ? fmt::format("tp {} pp {} ep {}", s.tp, s.pp, s.ep) : label,
                                 p.tpot_s, p.tokens_per_s, p.fits});
    }
    t.rows.push_back(std::move(r));
    for (size_t i = axes.size(); i-- > 0;) {
      if (++idx[i] < axes[i].values.size()) break;
      idx[i] = 0;
    }
  }
  if (infeasible > 0)
    t.notes.push_back(fmt::format("{} of {} points do not fit the device memory (fits = no; kept, with the numbers "
                                  "in note)",
                                  infeasible, total));
  tables.push_back(std::move(t));
  if (!html_dir.empty()) WriteServingHtml(html_dir, tables.front().title, tables, curve);
  return tables;
}

}  // namespace lifeline::cli
