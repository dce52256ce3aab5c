#pragma once
// Device calibration: fit a device's efficiencies and overheads by nonlinear
// least squares (Levenberg-Marquardt, Eigen) so the roofline reproduces
// measured or published throughputs.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {

// A DeviceSpec field the fit may change.
enum class DeviceParam {
  kMemoryEfficiency,
  kComputeEfficiency,
  kAttentionComputeEfficiency,
  kMoeExpertComputeInt2Efficiency,
  kMoeExpertComputeInt3Efficiency,
  kMoeExpertComputeInt4Efficiency,
  kMoeExpertComputeInt8Efficiency,
  kDispatchOverhead,
  kHeadDispatchOverhead,
  // efficiency.linear_compute_<fmt>, one per LinearFormat in its order:
  // LinearComputeParam(f) = kLinearComputeF32 + f.
  kLinearComputeF32,
  kLinearComputeF16,
  kLinearComputeBf16,
  kLinearComputeQ8_0,
  kLinearComputeQ4_0,
  kLinearComputeQ4_K,
  kLinearComputeQ3_K,
  kLinearComputeQ2_K,
  kLinearComputeInt2,
  kLinearComputeInt3,
  kLinearComputeInt4,
  kLinearComputeInt8,
};
DeviceParam LinearComputeParam(LinearFormat f);
// Every parameter, in declaration order (the keys --fit, --set and --sweep accept).
const std::vector<DeviceParam>& AllDeviceParams();
std::string DeviceParamKey(DeviceParam p);  // YAML key path, e.g. "efficiency.memory"
// Throws ConfigError (listing the keys, with a did-you-mean hint) for an unknown key.
DeviceParam ParseDeviceParam(const std::string& key);
// The parameter's field. An unset per-format linear efficiency (which follows
// efficiency.compute) is first set to efficiency.compute, so the reference
// reads the value in effect and writing it decouples that format only.
double& DeviceParamRef(DeviceSpec& d, DeviceParam p);
// The value in effect, without changing `d`.
double DeviceParamValue(const DeviceSpec& d, DeviceParam p);

struct CalibrationResult {
  DeviceSpec device;               // the fitted spec
  std::vector<double> predicted;   // model value per observation
  std::vector<double> residuals;   // predicted - target
  double rms = 0;                  // root mean square residual
  double max_abs = 0;              // largest |residual|
  int iterations = 0;
  // The solver stopped on a negligible improvement and the fit is usable:
  // every prediction finite and at least 1% of its observation, and the rms
  // residual at most kMaxRelativeRmsResidual of the observations' rms.
  bool converged = false;
  std::string problem;  // why the fit is not usable; empty when it is
};

// Largest rms residual, relative to the rms of the observations, of a fit that
// may say it converged.
inline constexpr double kMaxRelativeRmsResidual = 0.10;

// Fits `params` of `initial` to minimise sum_i (predict(d)[i] - targets[i])^2.
// Efficiencies stay in (0, 1), overheads >= 0; several starting points are
// tried and the lowest cost kept.
CalibrationResult CalibrateDevice(const DeviceSpec& initial, const std::vector<DeviceParam>& params,
                                  const std::function<std::vector<double>(const DeviceSpec&)>& predict,
                                  const std::vector<double>& targets, int max_iterations = 200);

// One measured or published observation of a device (a row of an
// observations CSV): decode TPS at a context and/or TTFT of a prompt.
struct Observation {
  ModelArch arch;
  QuantPlan plan;
  BuildOptions build;               // fidelity, fusion, batch (phase decode)
  int64_t context_tokens = 0;       // attended context of the decode step
  std::optional<double> tps;        // decode tokens/s per sequence
  std::optional<double> ttft_s;     // time to first token of `prompt_tokens`
  int64_t prompt_tokens = 0;
  std::string where;                // "file.csv:12" for reports and errors
};

// Reads an observations CSV. Columns (header names, any order):
//   model, plan, context_tokens            required
//   tps                                    decode tokens/s (may be empty when ttft_s is given)
//   ttft_s, prompt_tokens                  optional: time to first token of a prompt
//   device                                 optional: rows for other devices than `device_name` are skipped
//   fidelity, fusion, batch                optional: exact / paper / 1 (the paper's
//                                          rows need fidelity "paper")
// Unknown columns are rejected with a did-you-mean hint.
std::vector<Observation> LoadObservationsCsv(const std::filesystem::path& csv, const std::string& device_name);

// A fit to observations; residual i belongs to observation rows[i] and is of
// kind kinds[i] ("tps" in tokens/s or "ttft_s" in seconds).
struct ObservationFit {
  CalibrationResult fit;            // fitted device (its residuals are in fit units)
  std::vector<size_t> rows;
  std::vector<std::string> kinds;
  std::vector<double> measured, predicted, residuals;  // in each kind's own unit
  double rms_tps = 0, max_abs_tps = 0, r2_tps = 0;     // over TPS rows (R^2 = 1 - SS_res / SS_tot)
  double rms_ttft_s = 0, max_abs_ttft_s = 0, r2_ttft = 0;  // over TTFT rows
  int tps_count = 0, ttft_count = 0;
};

// Fits `params` of `initial` to the observations by least squares. TPS rows
// enter in tokens/s; TTFT rows as predicted/measured times the median
// measured TPS, so a 1% TTFT miss weighs like a 1% TPS miss.
ObservationFit CalibrateFromObservations(const DeviceSpec& initial, const std::vector<DeviceParam>& params,
                                         const std::vector<Observation>& obs);

}  // namespace lifeline
