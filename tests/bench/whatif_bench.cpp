// What-if sweep rate: grid points per second through whatif::RunSweep (graph
// built once; each point evaluates TPS, TTFT and two elasticities, i.e. six
// compiled-graph evaluations), with and without the Gain%/Capture% baselines,
// and the same grid formatted as CSV as `lifeline whatif --format csv` does.

#include <benchmark/benchmark.h>
#include <fmt/format.h>

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

BENCHMARK_CAPTURE(SweepPoints, qwen3_4b, "qwen3-4b", false, false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(SweepPoints, qwen3_4b_gain_capture, "qwen3-4b", true, false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(SweepPoints, qwen3_4b_csv, "qwen3-4b", false, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(SweepPoints, gpt_oss_20b, "gpt-oss-20b", false, false)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lifeline::whatif

BENCHMARK_MAIN();
