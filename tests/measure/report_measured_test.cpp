// `lifeline report` on a store holding measured cells: each measurement is a
// device column "measured: <machine>" beside forecasts of the same model,
// plan and context, with Gain% computed from the measured TPS.

#include <gtest/gtest.h>

#include "experiments/sweep/joint_report.hpp"
#include "experiments/sweep/store.hpp"

namespace lifeline::sweep {
namespace {

CellRow Measured(const std::string& plan, double tps) {
  CellRow r;
  r.id = plan;
  r.kind = CellKind::kMeasured;
  r.status = CellStatus::kDone;
  r.inputs = {{"kind", "measured"}, {"model", "qwen3-0.6b"}, {"plan", plan},     {"context_tokens", 512},
              {"machine", "CPU X"}, {"flash_attn", false},    {"threads", 2}};
  r.outputs = {{"tps_median", tps}};
  return r;
}

CellRow Forecast(const std::string& plan, double tps) {
  CellRow r;
  r.id = "f" + plan;
  r.kind = CellKind::kThroughput;
  r.status = CellStatus::kDone;
  r.inputs = {{"model", "qwen3-0.6b"}, {"fidelity", "exact"}, {"fusion", "none"}, {"batch", 1},
              {"device", "this_machine"}, {"plan", plan}, {"context", 512}};
  r.outputs = {{"tps", tps}};
  return r;
}

TEST(ReportMeasured, MeasuredCellsSitBesideTheForecastsWithTheirGain) {
  JointReportOptions o;
  o.baseline = "gguf-w4";
  o.ceiling = "gguf-w2";
  const JointReport rep = BuildJointReport(
      {Measured("gguf-w4", 40.0), Measured("gguf-w4w2-gateup", 44.0), Measured("gguf-w2", 50.0),
       Forecast("gguf-w4", 42.0), Forecast("gguf-w4w2-gateup", 45.0), Forecast("gguf-w2", 48.0)},
      o);
  ASSERT_EQ(rep.tables.size(), 1u);
  const reports::Table& t = rep.tables[0].second;
  const auto col = [&](const std::string& name) {
    for (size_t i = 0; i < t.columns.size(); ++i) {
      if (t.Header(i) == name || t.columns[i] == name) return static_cast<int>(i);
    }
    return -1;
  };
  const int measured = col("TPS measured: CPU X"), forecast = col("TPS this_machine"),
            gain = col("Gain% measured: CPU X");
  ASSERT_GE(measured, 0);
  ASSERT_GE(forecast, 0);
  ASSERT_GE(gain, 0);
  bool seen = false;
  for (const auto& row : t.rows) {
    if (row[0].Text() != "gguf-w4w2-gateup") continue;
    seen = true;
    EXPECT_EQ(std::get<double>(row[measured].value), 44.0);
    EXPECT_EQ(std::get<double>(row[forecast].value), 45.0);
    EXPECT_NEAR(std::get<double>(row[gain].value), 10.0, 1e-9);  // 44 / 40 - 1
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace lifeline::sweep
