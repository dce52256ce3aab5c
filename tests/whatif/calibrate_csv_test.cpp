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
  out << "device,model,plan,context_tokens,tps,fidelity\n";
  for (const auto& [key, row] : LoadPaperReference(DefaultPaperReferencePath())) {
    const auto& [dev, model, ctx] = key;
    out << dev << "," << model << ",w4," << ctx << "," << row.tps_w4 << ",paper\n";
    out << dev << "," << model << ",w2," << ctx << "," << row.tps_w2 << ",paper\n";
    out << dev << "," << model << ",w4w2-gateup," << ctx << "," << row.tps_w4w2_gateup << ",paper\n";
  }
  return path;
}

TEST(CalibrateCsv, PaperRowsAreReproducedWithinTolerance) {
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
  // Counts beyond the run limits name the row, the column and the limit.
  const std::string huge = error_of("model,plan,context_tokens,tps\nqwen3-4b,w4,9223372036854775807,30\n");
  EXPECT_NE(huge.find(":2: key 'context_tokens'"), std::string::npos) << huge;
  EXPECT_NE(huge.find("beyond the limit of 16777216 tokens"), std::string::npos) << huge;
  const std::string batch = error_of("model,plan,context_tokens,tps,batch\nqwen3-4b,w4,1024,30,1000000\n");
  EXPECT_NE(batch.find("key 'batch'"), std::string::npos) << batch;
  EXPECT_NE(batch.find("beyond the limit of 65536 sequences"), std::string::npos) << batch;
  const std::string half = error_of("model,plan,context_tokens,tps\nqwen3-4b,w4,1024.5,30\n");
  EXPECT_NE(half.find("'1024.5' is not a whole number"), std::string::npos) << half;
}

// A fit may say it converged only when its predictions are usable.
TEST(CalibrateFit, CollapsedOrFarOffFitsDoNotConverge) {
  const DeviceSpec d = ResolveDeviceSpec("device_a");
  const std::vector<DeviceParam> params = {DeviceParam::kMemoryEfficiency};
  // Predictions that cannot reach the observations: ~0 whatever the efficiency.
  const CalibrationResult collapsed = CalibrateDevice(
      d, params, [](const DeviceSpec& s) { return std::vector<double>{1e-6 * s.memory_efficiency, 2e-6}; },
      {28.0, 30.0});
  EXPECT_FALSE(collapsed.converged);
  EXPECT_NE(collapsed.problem.find("2 of 2 predictions"), std::string::npos) << collapsed.problem;
  EXPECT_NE(collapsed.problem.find("cannot follow these observations"), std::string::npos) << collapsed.problem;
  // A model that cannot follow the observations: rms residual 40 against an rms of 51.
  const CalibrationResult far = CalibrateDevice(
      d, params, [](const DeviceSpec& s) { return std::vector<double>{10.0, 10.0 + 0 * s.memory_efficiency}; },
      {10.0, 50.0});
  EXPECT_FALSE(far.converged);
  EXPECT_NE(far.problem.find("78% of the observations' rms"), std::string::npos) << far.problem;
  // One that can: 30 x efficiency = 24 at efficiency 0.8.
  const CalibrationResult good = CalibrateDevice(
      d, params, [](const DeviceSpec& s) { return std::vector<double>{30.0 * s.memory_efficiency}; }, {24.0});
  EXPECT_TRUE(good.converged) << good.problem;
  EXPECT_TRUE(good.problem.empty());
  EXPECT_NEAR(good.device.memory_efficiency, 0.8, 1e-6);
}

TEST(CalibrateCsv, CliPrintsResidualsAndWritesALoadableDevice) {
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

// TTFT written in milliseconds under the ttft_s column: no device fits both
// these TTFTs and the TPS rows. The command says so and writes no device.
TEST(CalibrateCsv, CliRefusesAFitThatCannotFollowTheObservations) {
  const auto csv = std::filesystem::temp_directory_path() / "lifeline_ttft_in_ms.csv";
  {
    std::ofstream out(csv);
    out << "model,plan,context_tokens,tps,ttft_s,prompt_tokens\n";
    for (int ctx : {1024, 2048, 4096, 8192, 16384}) {
      out << "qwen3-4b,w4," << ctx << ",30," << 450 + ctx / 100 << ",512\n";
      out << "qwen3-4b,w2," << ctx << ",40," << 450 + ctx / 100 << ",512\n";
    }
  }
  const auto yaml = std::filesystem::temp_directory_path() / "lifeline_ttft_in_ms_device.yaml";
  std::filesystem::remove(yaml);
  const auto r = lifeline::testing::Exec("calibrate --observations " + csv.string() + " --write " + yaml.string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(r.output.find("converged: yes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("converged: no (10 of 20 predictions are below 1% of their observation"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("error: calibration failed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(yaml.string() + " was not written"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(yaml));
}

}  // namespace
}  // namespace lifeline
