// Decode evaluations per second: the graph is built once, then evaluated for
// many (device, context) points. Reports items_per_second = points/s on one
// core; goal >= 1,000,000.

#include <benchmark/benchmark.h>

#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {
namespace {

std::vector<DeviceSpec> Devices() {
  // 64 what-if devices around Device A: bandwidth x TOPS.
  const DeviceSpec base = ResolveDeviceSpec("device_a");
  std::vector<DeviceSpec> out;
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) {
      DeviceSpec d = base;
      d.memory_bandwidth_bytes_per_s = (50 + 25 * i) * 1e9;
      d.compute_ops_per_s = (25 + 25 * j) * 1e12;
      out.push_back(d);
    }
  return out;
}

void DecodePoints(benchmark::State& state, const char* model, bool compiled) {
  const ModelArch a = ResolveModelArch(model);
  const ModelGraph g = BuildModelGraph(a, PresetPlan("w4w2-gateup", a), BuildOptions{});
  const CompiledGraph c(g);
  const auto devices = Devices();
  const int64_t contexts[] = {512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
  double sink = 0;
  int64_t points = 0;
  for (auto _ : state) {
    for (const auto& d : devices)
      for (int64_t ctx : contexts) {
        sink += compiled ? c.StepSeconds(d, ctx) : EvaluateStep(g, d, ctx).total_s;
        ++points;
      }
    benchmark::DoNotOptimize(sink);
  }
  state.SetItemsProcessed(points);
  state.counters["terms"] = static_cast<double>(c.TermCount());
  state.counters["nodes"] = static_cast<double>(g.order.size());
}

BENCHMARK_CAPTURE(DecodePoints, qwen3_4b_compiled, "qwen3-4b", true);
BENCHMARK_CAPTURE(DecodePoints, gpt_oss_20b_compiled, "gpt-oss-20b", true);
BENCHMARK_CAPTURE(DecodePoints, qwen3_4b_full_walk, "qwen3-4b", false);
BENCHMARK_CAPTURE(DecodePoints, gpt_oss_20b_full_walk, "gpt-oss-20b", false);

void BuildGraph(benchmark::State& state) {
  const ModelArch a = ResolveModelArch("qwen3-4b");
  const QuantPlan p = PresetPlan("w4w2-gateup", a);
  for (auto _ : state) benchmark::DoNotOptimize(BuildModelGraph(a, p, BuildOptions{}));
}
BENCHMARK(BuildGraph);

}  // namespace
}  // namespace lifeline

BENCHMARK_MAIN();
