// What-if sweep rate: grid points per second through whatif::RunSweep (graph
// built once; each point evaluates TPS, TTFT and two elasticities), with and
// without the Gain%/Capture% baselines, the same grid formatted as CSV as
// `lifeline whatif --format csv` does, and context sweeps end to end.

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <charconv>

#include "roofline/whatif/whatif.hpp"

namespace lifeline::whatif {
namespace {

// bandwidth x TOPS x context = 20 x 20 x 250 = 100,000 points per iteration
// (validating the 290 axis values and building the graphs is included).
std::vector<SweepAxis> Axes() {
  return {ParseSweepArg("memory_bandwidth_gb_per_s=50:1000:50"), ParseSweepArg("int8_tops=10:200:10"),
          ParseSweepArg("context=256:64000:256")};
}

void SweepPoints(benchmark::State& state, const char* model, bool paper_metrics, bool csv) {
  RunSpec run;
  run.model = model;
  const Scenario sc(run);
  const auto axes = Axes();
  SweepOptions so;
  if (paper_metrics) so = {"w4", "w2"};
  double sink = 0;
  std::string buf;
  int64_t points = 0;
  for (auto _ : state) {
    buf.clear();
    RunSweep(sc, {}, axes, so, [&](const std::vector<size_t>& idx, const SweepMetrics& m) {
      sink += m.tps;
      if (csv) {
        for (size_t i = 0; i < idx.size(); ++i) {
          buf += axes[i].values[idx[i]];
          buf += ',';
        }
        fmt::format_to(std::back_inserter(buf), "{:.7g},{:.7g},{:.7g},{:.7g},{:.7g},{:.7g}\n", m.tps, m.tpot_s,
                       m.batch_tps, m.ttft_s, m.elasticity_bandwidth, m.elasticity_tops);
      }
    });
    points += static_cast<int64_t>(GridSize(axes));
    benchmark::DoNotOptimize(sink);
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(points);
}

// Context sweeps end to end, as `lifeline whatif --sweep context=A:B:S --format
// csv` runs them: the scenario loaded from its files, the axis validated, the
// graphs built and checked, every point evaluated (TPS, TTFT, two
// elasticities) and written as a CSV row. `points_per_s` is the end-to-end
// rate; `ratio_to_1M_points_per_s` is that rate over 1,000,000 points/s.
void ContextSweep(benchmark::State& state, const char* model, const char* fidelity, const char* axis,
                  bool paper_metrics) {
  const SweepAxis ax = ParseSweepArg(axis);
  std::string buf;
  double sink = 0;
  int64_t points = 0;
  for (auto _ : state) {
    RunSpec run;
    run.model = model;
    run.fidelity = fidelity;
    const Scenario sc(run);
    SweepOptions so;
    if (paper_metrics) so = {"w4", "w2"};
    buf.clear();
    const std::vector<SweepAxis> axes = {ax};
    RunSweep(sc, {}, axes, so, [&](const std::vector<size_t>& idx, const SweepMetrics& m) {
      sink += m.tps;
      buf += ax.values[idx[0]];
      // Each value as the command writes it: "%.7g" through std::to_chars.
      auto put = [&](double v) {
        char b[32];
        buf += ',';
        buf.append(b, std::to_chars(b, b + sizeof b, v, std::chars_format::general, 7).ptr);
      };
      for (double v : {m.tps, m.tpot_s, m.batch_tps, m.ttft_s, m.elasticity_bandwidth, m.elasticity_tops}) put(v);
      if (paper_metrics) {
        for (double v : {m.tps_baseline, m.gain_pct, m.tps_ceiling, m.capture_pct}) put(v);
      }
      buf += '\n';
      if (buf.size() >= (1u << 20)) buf.clear();  // the command flushes its buffer at 1 MiB
    });
    points += static_cast<int64_t>(ax.values.size());
    benchmark::DoNotOptimize(sink);
    benchmark::DoNotOptimize(buf.data());
  }
  state.counters["points_per_s"] = benchmark::Counter(static_cast<double>(points), benchmark::Counter::kIsRate);
  state.counters["ratio_to_1M_points_per_s"] =
      benchmark::Counter(static_cast<double>(points) / 1e6, benchmark::Counter::kIsRate);
}

// 1,000 points: the example, where loading and building dominate.
BENCHMARK_CAPTURE(ContextSweep, qwen3_4b_4_4000_4, "qwen3-4b", "paper", "context=4:4000:4", false)
    ->Unit(benchmark::kMillisecond);
// 1,000,000 points: the per-point rate.
BENCHMARK_CAPTURE(ContextSweep, qwen3_4b_4_4000000_4, "qwen3-4b", "paper", "context=4:4000000:4", false)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(ContextSweep, qwen3_4b_gain_capture_4_4000000_4, "qwen3-4b", "paper", "context=4:4000000:4", true)
    ->Unit(benchmark::kMillisecond);
// Sliding-window + MoE model at its true architecture.
BENCHMARK_CAPTURE(ContextSweep, gpt_oss_20b_exact_4_4000000_4, "gpt-oss-20b", "exact", "context=4:4000000:4", false)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_CAPTURE(SweepPoints, qwen3_4b, "qwen3-4b", false, false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(SweepPoints, qwen3_4b_gain_capture, "qwen3-4b", true, false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(SweepPoints, qwen3_4b_csv, "qwen3-4b", false, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(SweepPoints, gpt_oss_20b, "gpt-oss-20b", false, false)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lifeline::whatif

BENCHMARK_MAIN();
