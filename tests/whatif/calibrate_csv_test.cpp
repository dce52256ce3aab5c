// `lifeline calibrate --observations`: fitting to a CSV of TPS / TTFT rows.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "roofline/eval/calibration.hpp"
#include "roofline/eval/evaluator.hpp"
#include "experiments/paper/paper.hpp"
#include "tests/whatif/test_util.hpp"

namespace lifeline {
namespace {

// The published 1k-32k rows as observation rows (three plans per row); one
// file per test so tests may run in parallel.
std::filesystem::path PaperObservations(const std::string& tag) {
  const auto path = std::filesystem::temp_directory_path() / ("lifeline_paper_observations_" + tag + ".csv");
  std::ofstream out(path);
  out << "device,model,plan,context_tokens,tps\n";
  for (const auto& [key, row] : LoadPaperReference(DefaultPaperReferencePath())) {
    const auto& [dev, model, ctx] = key;
    out << dev << "," << model << ",w4," << ctx << "," << row.tps_w4 << "\n";
    out << dev << "," << model << ",w2," << ctx << "," << row.tps_w2 << "\n";
    out << dev << "," << model << ",w4w2-gateup," << ctx << "," << row.tps_w4w2_gateup << "\n";
  }
  return path;
}

TEST(CalibrateCsv, PaperRowsAreReproducedWithinTolerance) {
  if (!std::filesystem::exists(DefaultPaperReferencePath())) GTEST_SKIP() << "no shared reference";
  const auto csv = PaperObservations("lib");
  for (const char* name : {"device_a", "device_b"}) {
    const DeviceSpec d = ResolveDeviceSpec(name);
    const auto obs = LoadObservationsCsv(csv, name);
    ASSERT_EQ(obs.size(), 45u) << name;
    const ObservationFit f = CalibrateFromObservations(d, PaperFitParams(), obs);
    std::printf("%s: %d TPS rows, rms %.4f, max |residual| %.4f TPS, R^2 %.6f\n", name, f.tps_count, f.rms_tps,
                f.max_abs_tps, f.r2_tps);
    EXPECT_LT(f.max_abs_tps, 0.1) << name;  // the roofline issue's tolerance
    EXPECT_GT(f.r2_tps, 0.9999) << name;
    EXPECT_EQ(f.rows.size(), 45u);
  }
}

TEST(CalibrateCsv, RecoversAKnownDeviceFromTpsAndTtft) {
  // Synthetic measurements from a device with known efficiencies; the fit
  // starts elsewhere and must find them again.
  DeviceSpec truth = ResolveDeviceSpec("nvidia_rtx_4090");
  truth.memory_efficiency = 0.62;
  truth.compute_efficiency = 0.31;
  const ModelArch m = ResolveModelArch("qwen3-1.7b");
  const auto path = std::filesystem::temp_directory_path() / "lifeline_synthetic_observations.csv";
  {
    std::ofstream out(path);
    out << "model,plan,context_tokens,tps,ttft_s,prompt_tokens\n";
    for (const char* plan : {"w4", "bf16"}) {
      for (int64_t ctx : {1024, 8192}) {
        BuildOptions b;
        const CompiledGraph dg(BuildModelGraph(m, PresetPlan(plan, m), b));
        b.phase = Phase::kPrefill;
        b.prompt_tokens = 2048;
        const CompiledGraph pg(BuildModelGraph(m, PresetPlan(plan, m), b));
        char line[256];
        std::snprintf(line, sizeof line, "qwen3-1.7b,%s,%lld,%.9g,%.9g,2048\n", plan, static_cast<long long>(ctx),
                      1.0 / dg.StepSeconds(truth, ctx), pg.StepSeconds(truth, ctx));
        out << line;
      }
    }
  }
  const DeviceSpec start = ResolveDeviceSpec("nvidia_rtx_4090");
  const auto obs = LoadObservationsCsv(path, start.name);
  const ObservationFit f = CalibrateFromObservations(
      start, {DeviceParam::kMemoryEfficiency, DeviceParam::kComputeEfficiency}, obs);
  EXPECT_EQ(f.tps_count, 4);
  EXPECT_EQ(f.ttft_count, 4);
  EXPECT_NEAR(f.fit.device.memory_efficiency, 0.62, 1e-4);
  EXPECT_NEAR(f.fit.device.compute_efficiency, 0.31, 1e-4);
  EXPECT_LT(f.max_abs_ttft_s, 1e-6);
}

TEST(CalibrateCsv, BadCsvGetsClearErrors) {
  const auto path = std::filesystem::temp_directory_path() / "lifeline_bad_observations.csv";
  auto error_of = [&](const std::string& text) {
    std::ofstream(path) << text;
    try {
      LoadObservationsCsv(path, "device_a");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("model,plan,context_tokens,tsp\n").find("did you mean 'tps'"), std::string::npos);
  EXPECT_NE(error_of("model,plan,tps\n").find("context_tokens"), std::string::npos);
  EXPECT_NE(error_of("model,plan,context_tokens,tps\nqwen3-4b,w4,1024,30tok/s\n").find(":2"), std::string::npos);
  EXPECT_NE(error_of("model,plan,context_tokens,tps,ttft_s\nqwen3-4b,w4,1024,,0.5\n").find("prompt_tokens"),
            std::string::npos);
  EXPECT_NE(error_of("model,plan,context_tokens,tps\nqwen3-4b,w5,1024,30\n").find("unknown quantization preset"),
            std::string::npos);
}

TEST(CalibrateCsv, CliPrintsResidualsAndWritesALoadableDevice) {
  if (!std::filesystem::exists(DefaultPaperReferencePath())) GTEST_SKIP() << "no shared reference";
  const auto csv = PaperObservations("cli");
  const auto yaml = std::filesystem::temp_directory_path() / "lifeline_calibrated_b.yaml";
  const auto r = lifeline::testing::Exec("calibrate --observations " + csv.string() + " --device device_b --write " +
                                         yaml.string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("R^2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("residual_pct"), std::string::npos);
  const DeviceSpec d = LoadDeviceSpec(yaml);
  EXPECT_NE(d.sources.at("efficiency.memory").find("--observations"), std::string::npos);
  const auto bad = lifeline::testing::Exec("calibrate --observations " + csv.string() + " --fit efficiency.memroy");
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("not a fittable device parameter"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace lifeline
