// Pieces shared by whatif.cpp, analysis.cpp and sweep.cpp (not part of the
// what-if interface).
#pragma once

#include <functional>
#include <vector>

#include "roofline/spec/device_spec.hpp"

namespace lifeline::whatif::internal {

// A numeric field of DeviceSpec a device override can change, read and
// written through an accessor (the per-format linear efficiencies are array
// entries, which a pointer to member cannot name).
using DeviceField = double& (*)(DeviceSpec&);
// Every overridable device field, in KnownKeys() order of the device keys.
const std::vector<DeviceField>& DeviceFields();

// d ln f / d ln x by a central difference on x's field (+-0.1%).
double Elastic(double& field, const std::function<double()>& f);
// Elastic's relative step, and its result from f at x (1 + step) and x (1 - step)
// for callers that evaluate f on those two points themselves.
inline constexpr double kElasticStep = 1e-3;
double ElasticFromValues(double up, double down);

}  // namespace lifeline::whatif::internal
