#pragma once
// Device calibration: fit a device's efficiencies and overheads by nonlinear
// least squares (Levenberg-Marquardt, Eigen) so the roofline reproduces
// measured or published throughputs.

#include <functional>
#include <string>
#include <vector>

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
};
std::string DeviceParamKey(DeviceParam p);  // YAML key path, e.g. "efficiency.memory"
DeviceParam ParseDeviceParam(const std::string& key);
double& DeviceParamRef(DeviceSpec& d, DeviceParam p);

struct CalibrationResult {
  DeviceSpec device;               // the fitted spec
  std::vector<double> predicted;   // model value per observation
  std::vector<double> residuals;   // predicted - target
  double rms = 0;                  // root mean square residual
  double max_abs = 0;              // largest |residual|
  int iterations = 0;
  bool converged = false;
};

// Fits `params` of `initial` to minimise sum_i (predict(d)[i] - targets[i])^2.
// Efficiencies stay in (0, 1), overheads >= 0; several starting points are
// tried and the lowest cost kept.
CalibrationResult CalibrateDevice(const DeviceSpec& initial, const std::vector<DeviceParam>& params,
                                  const std::function<std::vector<double>(const DeviceSpec&)>& predict,
                                  const std::vector<double>& targets, int max_iterations = 200);

}  // namespace lifeline
