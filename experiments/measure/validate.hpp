#pragma once
// `lifeline validate`: forecasts against llama.cpp measurements on this
// machine, in three modes.
//   zero_fit    the probed device (bandwidth, peak, kernel rates, overheads
//               as measured by `lifeline probe`), nothing fitted;
//   calibrated  the probed device with a few parameters fitted (relative least
//               squares) on a fixed training subset: the smallest model at
//               the training contexts, every format; every other point is
//               held out and scored;
//   gain        the paper's quantities: Gain% and Capture% of W4/W2-GateUp
//               over W4, measured vs forecast.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/measure/measure.hpp"
#include "roofline/eval/calibration.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline::measure {

struct ValidateOptions {
  std::vector<std::string> models{"qwen3-0.6b", "qwen3-1.7b", "llama-3.2-3b"};
  std::vector<std::string> plans{"gguf-f16", "gguf-w4", "gguf-w2", "gguf-w4w2-gateup"};
  std::vector<int64_t> contexts{512, 2048, 8192};
  std::string train_model;             // default: models[0]
  std::vector<int64_t> train_contexts{512, 2048};
  std::vector<DeviceParam> fit;        // default: DefaultValidateFit()
  std::string baseline_plan = "gguf-w4", mixed_plan = "gguf-w4w2-gateup", ceiling_plan = "gguf-w2";
  std::string statistic = "median";    // a point's measured TPS: median of its repetitions, or best
  MeasureOptions measure;
  std::filesystem::path out, store;
  std::filesystem::path device;        // probed device YAML
};

std::vector<DeviceParam> DefaultValidateFit();

// One row of validation.csv.
struct ValidationRow {
  std::string model, plan, mode;
  int64_t context_tokens = 0;
  double measured_tps = 0, forecast_tps = 0, error_pct = 0;  // error = forecast / measured - 1
  bool heldout = false;
  bool noisy = false;
};

struct GainRow {
  std::string model, mode;
  int64_t context_tokens = 0;
  double measured_gain_pct = 0, forecast_gain_pct = 0;
  double measured_capture_pct = 0, forecast_capture_pct = 0;
};

struct ValidationReport {
  std::vector<ValidationRow> rows;
  std::vector<GainRow> gains;
  DeviceSpec zero_fit_device, calibrated_device;
  CalibrationResult fit;  // of the calibrated mode: residuals are forecast/measured - 1 on the training rows
  nlohmann::json summary;
};

// Measures whatever the store lacks, then scores. Writes DIR/validation.csv,
// gain.csv, summary.json, validation.md, device_calibrated.yaml and figures.
ValidationReport RunValidation(const ValidateOptions& o);

// Scores measured points (no measuring): the modes above. Exposed for tests.
ValidationReport ScoreValidation(const std::vector<MeasuredPoint>& points, const DeviceSpec& probed,
                                 const ValidateOptions& o);

}  // namespace lifeline::measure
