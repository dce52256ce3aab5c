// lifeline validate's scoring, on points whose "measurements" are the
// roofline's own forecasts for a known device: the calibrated mode must find
// that device's parameters from the training subset alone and then forecast
// every held-out point exactly, the zero-fit mode must show the probed
// device's error, and the output contract (validation.csv columns, summary
// keys) must hold.

#include <gtest/gtest.h>

#include <cmath>

#include "experiments/measure/validate.hpp"
#include "common/error.hpp"
#include "roofline/eval/calibration.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::measure {
namespace {

DeviceSpec Probed() {
  DeviceSpec d;
  d.name = "probed";
  d.compute_ops_per_s = 200e9;
  d.memory_bandwidth_bytes_per_s = 40e9;
  d.memory_efficiency = 0.8;
  // The probe measures the attention kernel and each format's matrix-vector
  // rate; in a real decode they come out somewhat different.
  d.attention_compute_efficiency = 0.2;
  for (const auto& [key, v] : std::vector<std::pair<std::string, double>>{{"efficiency.linear_compute_f16", 0.5},
                                                                          {"efficiency.linear_compute_q4_0", 0.5},
                                                                          {"efficiency.linear_compute_q2_k", 0.4}}) {
    DeviceParamRef(d, ParseDeviceParam(key)) = v;
  }
  return d;
}

// The "true" machine: slower dequantisation per format, slower attention,
// and a per-kernel overhead the probe did not see.
DeviceSpec Truth() {
  DeviceSpec d = Probed();
  for (const auto& [key, v] : std::vector<std::pair<std::string, double>>{
           {"efficiency.linear_compute_f16", 0.55}, {"efficiency.linear_compute_q4_0", 0.42},
           {"efficiency.linear_compute_q2_k", 0.31}, {"efficiency.attention_compute", 0.12},
           {"overhead.dispatch_s", 4e-6}}) {
    DeviceParamRef(d, ParseDeviceParam(key)) = v;
  }
  return d;
}

ValidateOptions Options() {
  ValidateOptions o;
  o.models = {"qwen3-0.6b", "qwen3-1.7b", "llama-3.2-3b"};
  o.contexts = {512, 2048, 8192};
  o.measure.gen = 16;
  return o;
}

std::vector<MeasuredPoint> PointsFrom(const DeviceSpec& truth, const ValidateOptions& o) {
  std::vector<MeasuredPoint> pts;
  for (const auto& m : o.models) {
    const ModelArch a = ResolveModelArch(m);
    for (const auto& p : o.plans) {
      for (int64_t c : o.contexts) {
        MeasuredPoint pt;
        pt.model = m;
        pt.plan = p;
        pt.context_tokens = c;
        pt.tps_median = pt.tps_min = pt.tps_max = ForecastTps(a, ResolveQuantPlan(p, a), truth, c, o.measure.gen);
        pt.rep_tps = {pt.tps_median};
        pts.push_back(pt);
      }
    }
  }
  return pts;
}

TEST(Validate, CalibratedModeRecoversTheDeviceFromTheTrainingSubset) {
  ValidateOptions o = Options();
  for (const char* k : {"efficiency.linear_compute_f16", "efficiency.linear_compute_q4_0",
                        "efficiency.linear_compute_q2_k", "efficiency.attention_compute", "overhead.dispatch_s"}) {
    o.fit.push_back(ParseDeviceParam(k));
  }
  const ValidationReport r = ScoreValidation(PointsFrom(Truth(), o), Probed(), o);
  // 4 plans x 2 training contexts of the smallest model.
  EXPECT_EQ(r.summary["train_points"].get<int>(), 8);
  EXPECT_EQ(r.summary["calibrated_heldout_points"].get<int>(), 36 - 8);
  const double med = r.summary["calibrated_heldout_median_abs_error_pct"].get<double>();
  const double max = r.summary["calibrated_heldout_max_abs_error_pct"].get<double>();
  std::cout << "calibrated held-out |error|: median " << med << " %, max " << max << " % (tolerance 0.5 %)\n";
  EXPECT_LT(max, 0.5);
  // The probed device lacks the dequantisation terms: zero-fit forecasts too fast.
  EXPECT_GT(r.summary["zero_fit_median_abs_error_pct"].get<double>(), 10.0);
  EXPECT_LT(r.summary["gain_pct_max_abs_diff_pp"].get<double>(), 0.5);
  for (const auto& row : r.rows) {
    if (row.mode == "calibrated" && row.model == "qwen3-0.6b" && (row.context_tokens == 512 || row.context_tokens == 2048)) {
      EXPECT_FALSE(row.heldout) << row.plan << " " << row.context_tokens;
    } else if (row.mode == "calibrated") {
      EXPECT_TRUE(row.heldout);
    }
    EXPECT_NEAR(row.error_pct, 100.0 * (row.forecast_tps / row.measured_tps - 1.0), 1e-9);
  }
}

TEST(Validate, GainAndCaptureFollowTheirDefinitions) {
  const ValidateOptions o = Options();
  const auto pts = PointsFrom(Truth(), o);
  const ValidationReport r = ScoreValidation(pts, Probed(), o);
  auto tps = [&](const std::string& m, const std::string& p, int64_t c) -> double {
    for (const auto& x : pts) {
      if (x.model == m && x.plan == p && x.context_tokens == c) return x.tps_median;
    }
    return NAN;
  };
  ASSERT_EQ(r.gains.size(), 3u * 3u * 2u);
  for (const auto& g : r.gains) {
    const double w4 = tps(g.model, "gguf-w4", g.context_tokens), mix = tps(g.model, "gguf-w4w2-gateup", g.context_tokens),
                 w2 = tps(g.model, "gguf-w2", g.context_tokens);
    EXPECT_NEAR(g.measured_gain_pct, 100.0 * (mix / w4 - 1.0), 1e-9);
    EXPECT_NEAR(g.measured_capture_pct, 100.0 * (mix - w4) / (w2 - w4), 1e-9);
  }
}

TEST(Validate, TooFewTrainingPointsIsAnError) {
  ValidateOptions o = Options();
  o.plans = {"gguf-w4"};
  o.train_contexts = {512};
  try {
    ScoreValidation(PointsFrom(Truth(), o), Probed(), o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 training points cannot determine 2 fitted parameters"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace lifeline::measure
